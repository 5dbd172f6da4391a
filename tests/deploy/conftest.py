"""Shared helpers for the deployment checks (Terraform, cloud-init, scripts)."""
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "terraform"
GCE_DIR = TF_DIR / "gce"
CLOUD_INIT = REPO / "cloud-init" / "bastion.yaml"
SCRIPTS = REPO / "scripts"


def require_tool(name):
    """Return the path of a checker; fail under CI when it is missing, else skip."""
    path = shutil.which(name)
    if path:
        return path
    msg = f"{name} is not installed (scripts/check-deploy.sh installs it)"
    if os.environ.get("CI") == "true" or os.environ.get("DEPLOY_CHECKS_REQUIRE_TOOLS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)
