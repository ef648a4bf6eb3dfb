from facesketch.cli import main

raise SystemExit(main())
