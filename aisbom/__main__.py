from aisbom.cli import main

raise SystemExit(main())
