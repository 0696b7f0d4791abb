# The ready-to-run gpupool hub: everything comes from the catalog folder
# (GPUPOOL_CONFIG_DIR, default hub_config/ beside this file). See README.md.
import os
from pathlib import Path

from gpupool.hub import configure

c = get_config()  # noqa: F821
configure(c, os.environ.get("GPUPOOL_CONFIG_DIR") or Path(__file__).resolve().parent / "hub_config")

# Another login (GitHub, GitLab, OpenID Connect): a fragment from deploy/auth/, see there.
auth = os.environ.get("GPUPOOL_AUTH_CONFIG")
if auth:
    load_subconfig(auth)  # noqa: F821
