from portway.cli import main

raise SystemExit(main())
