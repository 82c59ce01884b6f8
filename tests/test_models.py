"""Model registry, model API and checkpoints (every registered model)."""

from __future__ import annotations

import json

import pytest
import torch

from odesr.checkpoints import load, load_checkpoint, save_checkpoint
from odesr.degrade import upscale
from odesr.models import MODELS, SRResult, build
from odesr.nets import count_params

pytestmark = pytest.mark.usefixtures("one_thread")


ALL = ["vdsr-ode", "rdn-ode", "bicubic", "vdsr+t", "rdn+t", "meta-rdn", "vdsr-fixed", "rdn-fixed"]


def smoke_spec(name: str) -> dict:
    if name == "bicubic":
        return {"name": name}
    spec = {"name": name, "preset": "smoke"}
    if name == "meta-rdn":
        spec["hidden"] = 16
    if name.endswith("-ode"):
        spec["step_size"] = 0.25
    return spec


def scale_for(name: str) -> float:
    return 2.0 if name == "rdn-fixed" else 1.5


def test_registry_has_all_models():
    assert set(ALL) <= set(MODELS)


@pytest.mark.parametrize("name", ALL)
def test_api_shapes_and_spec(name):
    torch.manual_seed(0)
    model = build(smoke_spec(name))
    assert model.spec["name"] == name
    assert json.loads(json.dumps(model.spec)) == model.spec
    assert model.input_kind in ("upscaled", "lr")
    lr = torch.rand(2, 3, 8, 10)
    scale = scale_for(name)
    size = (16, 20) if scale == 2 else (12, 15)
    res = model.super_resolve(lr, scale, size)
    assert isinstance(res, SRResult)
    assert res.image.shape == (2, 3, *size)
    # forward is the differentiable pass
    x = upscale(lr, scale, size) if model.input_kind == "upscaled" else lr
    out = model(x, scale, size)
    assert out.shape == (2, 3, *size)
    if count_params(model):
        out.mean().backward()
        assert any(p.grad is not None for p in model.parameters())
    assert (out.detach() - res.image).abs().max() < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_round_trip(name, tmp_path):
    torch.manual_seed(1)
    model = build(smoke_spec(name))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "sub" / f"{name}.pt"
    save_checkpoint(path, model, step=7, optimizer={"lr": 1e-4})
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    loaded, extra = load_checkpoint(path)
    assert extra == {"step": 7, "optimizer": {"lr": 1e-4}}
    assert loaded.spec == model.spec and type(loaded) is type(model)
    lr = torch.rand(1, 3, 8, 8)
    scale = scale_for(name)
    a = model.super_resolve(lr, scale, (16, 16) if scale == 2 else (12, 12)).image
    b = load(path).super_resolve(lr, scale, (16, 16) if scale == 2 else (12, 12)).image
    assert torch.equal(a, b)


def test_corrupt_checkpoint_names_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="broken.pt"):
        load(bad)
    other = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="plain.pt"):
        load(other)
    good = tmp_path / "good.pt"
    save_checkpoint(good, build(smoke_spec("vdsr-ode")))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.pt"):
        load(truncated)


def test_expected_kind(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, build(smoke_spec("vdsr+t")))
    assert load(path, expected_kind="vdsr+t").spec["name"] == "vdsr+t"
    assert load(path, expected_kind=["vdsr-ode", "vdsr+t"]) is not None
    assert load(path, expected_kind="upscaled") is not None
    with pytest.raises(ValueError, match="m.pt"):
        load(path, expected_kind="rdn-ode")


def test_build_errors():
    with pytest.raises(ValueError):
        build({"name": "nope"})
    with pytest.raises(ValueError):
        build({"preset": "smoke"})
    with pytest.raises(ValueError):
        build({"name": "rdn-fixed", "scale": 5, "preset": "smoke"})


def test_rdn_fixed_rejects_other_scales():
    model = build({"name": "rdn-fixed", "scale": 3, "preset": "smoke"})
    assert model.super_resolve(torch.rand(1, 3, 5, 6), 3, (15, 18)).image.shape == (1, 3, 15, 18)
    with pytest.raises(ValueError):
        model.super_resolve(torch.rand(1, 3, 5, 6), 2.0, (10, 12))


def test_bicubic_is_upscale():
    lr = torch.rand(1, 3, 7, 9)
    res = build({"name": "bicubic"}).super_resolve(lr, 2.5, (17, 22))
    assert res.nfe == 0 and torch.equal(res.image, upscale(lr, 2.5, (17, 22)))


def test_ode_model_solver_options_and_tiling():
    torch.manual_seed(0)
    model = build({"name": "vdsr-ode", "preset": "smoke"})
    # default: one rk4 step from t0 to 1, the bare odeint reading (issue 9)
    assert model.spec["method"] == "rk4" and (model.spec["steps"], model.spec["step_size"]) == (
        1,
        None,
    )
    lr = torch.rand(1, 3, 9, 11)
    assert model.super_resolve(lr, 1.3, (12, 14)).nfe == 4
    res = model.super_resolve(lr, 1.3, (12, 14), grid="h0.1")
    assert res.nfe == 3 * 4
    res = model.super_resolve(lr, 1.3, (12, 14), method="euler", steps=2, return_trajectory=True)
    assert res.nfe == 2 and res.trajectory.shape == (3, 1, 3, 12, 14)
    assert res.times[0].item() == pytest.approx(1.3) and res.times[-1].item() == 1.0
    x = upscale(lr, 1.3, (12, 14)).requires_grad_(True)
    a = model(x, 1.3, method="midpoint", step_size=0.1)
    b = model(x, 1.3, method="midpoint", step_size=0.1, checkpoint=True)
    assert (a - b).abs().max() < 1e-6
    overlap = model.safe_overlap(1.3, method="euler", steps=2)
    assert overlap == 3 * 2
    full = model.super_resolve(lr, 1.3, (12, 14), method="euler", steps=2)
    tiled = model.super_resolve(lr, 1.3, (12, 14), method="euler", steps=2, tile=5, overlap=overlap)
    assert (tiled.image - full.image).abs().max() < 1e-4


def test_meta_rdn_any_size_and_chunking():
    torch.manual_seed(0)
    model = build(smoke_spec("meta-rdn"))
    lr = torch.rand(2, 3, 6, 7)
    out = model(lr, 2.7, (16, 18))
    assert out.shape == (2, 3, 16, 18)
    chunked = model(lr, 2.7, (16, 18), max_elems=1)  # one output row per chunk
    assert (out - chunked).abs().max() < 1e-6


def test_paper_param_counts():
    with torch.device("meta"):
        counts = {
            n: count_params(build({"name": n, "preset": "paper"}))
            for n in ("vdsr-ode", "vdsr+t", "rdn-ode", "rdn+t", "meta-rdn")
        }
    assert counts["vdsr-ode"] == counts["vdsr+t"] == 668_803
    assert counts["rdn-ode"] == counts["rdn+t"]
    assert 21.5e6 < counts["rdn-ode"] < 22.5e6
    assert counts["meta-rdn"] > counts["rdn-ode"]


@pytest.mark.parametrize("name", ["vdsr-ode", "vdsr+t", "bicubic"])
def test_tiles_are_exact_by_default(name):
    """super_resolve(tile=...) without an overlap uses the exact one (receptive radius x NFE):
    the tiled result equals the untiled one, for eval --tile and upscale alike."""
    torch.manual_seed(0)
    model = build(smoke_spec(name)).eval()
    lr = torch.rand(1, 3, 9, 11)
    opts = {"method": "euler", "steps": 2} if model.is_ode else {}
    full = model.super_resolve(lr, 2.0, **opts)
    tiled = model.super_resolve(lr, 2.0, tile=5, **opts)
    assert tiled.nfe == full.nfe
    assert (tiled.image - full.image).abs().max() < 1e-5
    if model.receptive_radius:  # too little context differs, so the check above is not vacuous
        rough = model.super_resolve(lr, 2.0, tile=5, overlap=1, **opts)
        assert (rough.image - full.image).abs().max() > 1e-4


def test_meta_rdn_bicubic_skip_starts_at_bicubic_and_keeps_old_specs():
    """``skip: bicubic`` returns the MATLAB-bicubic upscale untrained (a residual learner);
    the default spec has no ``skip`` key, so earlier checkpoints keep their key."""
    from odesr.degrade import upscale

    lr = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(3))
    model = build({**smoke_spec("meta-rdn"), "skip": "bicubic"})
    with torch.no_grad():
        out = model(lr, 2.5, (23, 28))
    assert torch.allclose(out, upscale(lr, 2.5, (23, 28)), atol=1e-6)
    assert model.spec["skip"] == "bicubic" and "skip" not in build(smoke_spec("meta-rdn")).spec
    with pytest.raises(ValueError, match="skip"):
        build({**smoke_spec("meta-rdn"), "skip": "nearest"})
