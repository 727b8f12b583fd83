"""The installer's command line (python install.py / installer_cli.main) against a local HTTP server: --list,
--check, --download with the licence notice, mirrors, exit codes, the argument-less run, requirements.txt."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from install_fixtures import (  # noqa: F401
    FAST,
    REPO,
    _entry,
    _Handler,
    _isolated,
    _payload,
    _sha,
    _torch_file,
    _zip,
    catalogue,
    server,
)
from simswap_core.models import catalogue as mc
from simswap_core.models import install as inst
from simswap_core.models import installer_cli

# ------------------------------------------------------------------------------------------------ CLI


def _run_main(argv) -> tuple[int, str]:
    lines: list[str] = []
    code = installer_cli.main(argv, out=lines.append)
    return code, "\n".join(lines)


def test_cli_list_real_catalogue(tmp_path):
    models = tmp_path / "models"
    g = models / "simswap" / "latest_net_G.pth"
    g.parent.mkdir(parents=True)
    g.write_bytes(b"g")
    code, out = _run_main(["--list", "--models-dir", str(models)])
    assert code == 0
    for name in mc.CATALOGUE:
        assert name in out
    assert f"installed: {g}" in out and "MISSING" in out
    assert "NON-COMMERCIAL" in out and "CC BY-NC 4.0" in out and "256,461,775 B" in out
    assert "https://github.com/neuralchen/SimSwap/releases/download/1.0/checkpoints.zip" in out
    assert "not published" in out


def test_cli_check_reports_each_state(server, tmp_path, catalogue):
    good, bad = _torch_file(1000, 17), _torch_file(1000, 18)
    server.routes["/rec.pth"] = {"data": good}
    entries = {
        "pub": _entry(["https://example.invalid/pub.pth"], name="pub", filename="pub.pth", sha256=_sha(good)),
        "badpub": _entry(["https://example.invalid/b.pth"], name="badpub", filename="b.pth", sha256=_sha(good)),
        "rec": _entry([server.url + "/rec.pth"], name="rec", filename="rec.pth"),
        "free": _entry(["https://example.invalid/free.pth"], name="free", filename="free.pth"),
        "gone": _entry(["https://example.invalid/gone.pth"], name="gone", filename="gone.pth"),
    }
    catalogue(entries)
    models = tmp_path / "models"
    (models / "simswap").mkdir(parents=True)
    (models / "simswap" / "pub.pth").write_bytes(good)
    (models / "simswap" / "b.pth").write_bytes(bad)
    (models / "simswap" / "free.pth").write_bytes(bad)
    inst.install_model(entries["rec"], models, log=lambda s: None, **FAST)
    code, out = _run_main(["--check", "--models-dir", str(models)])
    assert code == 1  # one mismatch
    assert re.search(r"OK +pub:", out) and re.search(r"MISMATCH +badpub:", out)
    assert re.search(r"OK-RECORDED +rec:", out) and re.search(rf"UNVERIFIED +free:.*{_sha(bad)}", out)
    assert re.search(r"MISSING +gone:", out)
    (models / "simswap" / "rec.pth").write_bytes(bad)  # tampered after download
    code, out = _run_main(["--check", "--models-dir", str(models)])
    assert re.search(r"MISMATCH +rec:.*recorded at its first download", out)


def test_cli_downloads_with_licence_notice_first(server, tmp_path, catalogue):
    data = _torch_file(2000, 19)
    server.routes["/nc.pth"] = {"data": data}
    catalogue({"nc": _entry([server.url + "/nc.pth"], name="nc", filename="nc.pth", noncommercial=True,
                            license="CC BY-NC 4.0 test")})
    code, out = _run_main(["--model", "nc", "--models-dir", str(tmp_path), "--no-progress"])
    assert code == 0 and (tmp_path / "simswap" / "nc.pth").read_bytes() == data
    assert out.index("LICENCE NOTICE") < out.index("downloading")
    assert "NON-COMMERCIAL" in out and "CC BY-NC 4.0 test" in out


def test_cli_unknown_model_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        installer_cli.main(["--model", "nonexistent", "--models-dir", str(tmp_path)], out=lambda s: None)
    assert info.value.code == 2 and "unknown model 'nonexistent'" in capsys.readouterr().err


def test_cli_mirror_folder_and_failure_exit_code(server, tmp_path, catalogue):
    data = _torch_file(2000, 20)
    local = tmp_path / "usb"
    local.mkdir()
    (local / "official.zip").write_bytes(_zip({"ck/m.pth": data}))
    catalogue({
        "m": _entry([server.url + "/official.zip"], name="m", filename="m.pth", archive_member="ck/m.pth",
                    sha256=_sha(data)),
        "n": _entry([server.url + "/none.pth"], name="n", filename="n.pth"),
    })
    models = tmp_path / "models"
    code, out = _run_main(["--model", "m", "--models-dir", str(models), "--mirror", str(local), "--no-progress"])
    assert code == 0, out
    assert (models / "simswap" / "m.pth").read_bytes() == data
    assert server.requests == []  # the local mirror was tried first and worked
    code, out = _run_main(["--model", "n", "--models-dir", str(models), "--retries", "0", "--no-progress"])
    assert code == 1 and "FAIL  n:" in out and "HTTP 404" in out


def test_no_args_downloads_nothing_but_env_opt_in_does(server, tmp_path, catalogue, monkeypatch):
    data = _torch_file(2000, 21)
    server.routes["/r.pth"] = {"data": data}
    catalogue({"r": _entry([server.url + "/r.pth"], name="r", filename="r.pth", recommended=True)},
              recommended=("r",))
    models = tmp_path / "models"
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(models))
    code, out = _run_main([])
    assert code == 0 and "MISSING  r" in out and "--model r --models-dir" in out and "--download" in out
    assert server.requests == [] and not models.exists()
    monkeypatch.setenv("SIMSWAP_AUTO_DOWNLOAD", "1")
    code, out = _run_main(["--no-progress"])
    assert code == 0 and (models / "simswap" / "r.pth").read_bytes() == data


def test_install_py_no_args_is_quiet_offline_and_does_not_import_torch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SIMSWAP_MODELS_DIR", "SIMSWAP_AUTO_DOWNLOAD")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    code = (
        "import runpy, sys\n"
        "sys.argv = ['install.py']\n"
        "try:\n    runpy.run_path('install.py', run_name='__main__')\n"
        "except SystemExit as e:\n    print('EXIT', e.code)\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "EXIT 0" in proc.stdout and "NO-TORCH" in proc.stdout
    assert "nothing is downloaded without an explicit flag" in proc.stdout
    assert "MISSING  simswap_224" in proc.stdout and "--download" in proc.stdout
    assert not (tmp_path / "xdg").exists()  # nothing written


def test_requirements_txt_follows_comfyui_manager_rules():
    lines = [ln.split("#", 1)[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}
    assert names == {"numpy", "safetensors", "pillow", "kornia", "av", "tqdm", "onnx"}
    assert all("==" not in r and "<" not in r for r in reqs)  # loose lower bounds only
