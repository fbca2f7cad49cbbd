"""The original sample's manifests, byte for byte as its walkthrough shows them.

Kept as text here, not read from examples/, so that the tests can check examples/ against them.
"""

SEED_WEB = """\
Task:
  Family: "hello-web"
  Cpu: 256
  Memory: 512

AppContainer:
  Image: "wizriz/hello-web:66f2a19"
  Port: 80
  HealthCheckPath: "/ping"
  Command:
    - "node"
    - "server"
    - "-b http://hello-backend.demo.local/data"

VirtualNode:
  Backends:
    - "hello-backend.demo.local"
"""

# The backend as step 6 of the walkthrough changes it (examples/hello-backend-cfg-v2).
SEED_BACKEND_STEP_6 = """\
Task:
  Family: "hello-backend"
  Cpu: 256
  Memory: 512

AppContainer:
  Port: 80
  Image: "wizriz/hello-backend:66f2a19"
  HealthCheckPath: "/ping"
  Command:
    - "node"
    - "server"
    - "-g Yo"
    - "-m Have a great day!"
"""
