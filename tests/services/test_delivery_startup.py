"""`yingji delivery` with a channel missing its secret stops at start, naming the channel and the
variable, exit 2, before it reads anything (issue 19, bad input)."""

from __future__ import annotations

import os
import subprocess
import sys

from services.settings import REPO_ROOT


def test_a_channel_without_its_secret_is_a_start_up_error_naming_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("YINGJI_")}
    env.update({"YINGJI_DATA_DIR": str(tmp_path), "YINGJI_BOOTSTRAP_SERVERS": "127.0.0.1:1",
                "YINGJI_WECOM_ROBOT_URL": "http://127.0.0.1:1/cgi-bin/webhook/send?key=k",
                "YINGJI_DINGTALK_ROBOT_URL": "http://127.0.0.1:1/robot/send?access_token=t",
                "YINGJI_DELIVERY_WEB_PORT": "0"})
    proc = subprocess.run([sys.executable, "-m", "services.cli", "delivery"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "channel dingtalk: YINGJI_DINGTALK_ROBOT_SECRET is not set" in proc.stderr
    assert "Traceback" not in proc.stderr
