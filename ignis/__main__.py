from ignis.cli import main

raise SystemExit(main())
