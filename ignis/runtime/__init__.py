"""Runtime: lowering IR → Plan, the KV block pool, the engine loop (scheduler), sampling,
generation, the public Model."""
from ignis.runtime.model import Model, load
from ignis.runtime.request import Request
from ignis.runtime.sampling import SamplingParams
from ignis.runtime.scheduler import RequestHandle, Scheduler

__all__ = ["Model", "load", "Request", "RequestHandle", "Scheduler", "SamplingParams"]
