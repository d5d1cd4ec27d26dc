"""`python -m fuzz.plan_api --cases N [--seed S]`: the long run of the Plan API fuzzer."""
import argparse
import sys
import time

from hypothesis import HealthCheck, given, note, settings

from fuzz.plan_api import __doc__ as _doc
from fuzz.plan_api.server import check_case
from fuzz.plan_api.strategies import cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.plan_api", description=_doc.split("\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="number of cases (each in a child process)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (reproduce a run)")
    args = parser.parse_args(argv)
    settings.register_profile("fuzz", deadline=None, print_blob=True, database=None,
                              suppress_health_check=list(HealthCheck))
    stats = {}

    def count(key, n=1):
        stats[key] = stats.get(key, 0) + n

    def check(case):
        note(repr(case))
        out = check_case(case)
        count("cases")
        count("cases without any error" if out["status"] == "ok" else "cases with a refused call")
        count("runs completed (results checked)" if out["ran"] else "cases not run to the end")
        count("instructions value-checked against the reference", out["checked"])
        count("add_* accepted", out["adds_ok"])
        count("add_* refused (IgnisError)", out["adds_failed"])
        for call, kind, _ in out["errors"]:
            if not call.startswith("add_"):
                count(f"{call} refused ({kind})")

    test = settings(settings.get_profile("fuzz"), max_examples=args.cases)(given(cases())(check))
    if args.seed is not None:
        from hypothesis import seed
        test = seed(args.seed)(test)
    t = time.time()
    try:
        test()
        ok = True
    except Exception as e:          # hypothesis has printed the falsifying example
        ok = False
        print(f"FAILED: {type(e).__name__}: {e}", flush=True)
    dt = time.time() - t
    total = stats.get("cases", 0)
    print(f"{total} cases in {dt:.0f}s ({total / max(dt, 1e-9):.1f}/s): {'no failure' if ok else 'FAILED'}")
    for key in sorted(stats):
        if key != "cases":
            print(f"  {key}: {stats[key]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
