"""Process entry of a proxy: ``python -m meshpipe.engines.local.dataplane --mode gateway|sidecar ...``."""

from meshpipe.engines.local.dataplane.process import main

raise SystemExit(main())
