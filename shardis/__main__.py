from shardis.cli import main

raise SystemExit(main())
