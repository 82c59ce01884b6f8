"""ODE machinery: time grid, exact NFE, convergence order, checkpointing, tiling."""

from __future__ import annotations

import math

import pytest
import torch

from odesr.nets import build_backbone
from odesr.ode import FIXED_METHODS, ODEFunc, num_steps, safe_overlap, solve, time_grid
from odesr.tiling import run_tiled


def solve_tiled(func, y0, t0, *, tile, overlap, return_trajectory=False, **opts):
    """solve() on tiles of y0 through the one tiler (odesr.tiling.run_tiled)."""

    def restore(x):
        sol = solve(func, x, t0, return_trajectory=return_trajectory, **opts)
        return sol.image, sol.nfe, sol.trajectory, sol.times

    def window(rows, cols):
        return y0[..., rows[0] : rows[1], cols[0] : cols[1]]

    return run_tiled(restore, window, tuple(y0.shape[-2:]), tile, overlap)


pytestmark = pytest.mark.usefixtures("one_thread")


STAGES = {"euler": 1, "midpoint": 2, "rk4": 4, "rk4-classic": 4, "path-step": 1}


@pytest.fixture
def func():
    torch.manual_seed(0)
    return ODEFunc(build_backbone("vdsr", "smoke"))


@pytest.mark.parametrize("t0", [1.1, 1.2, 2.4, 4.0, 1.15, 3.95, 4.5])
@pytest.mark.parametrize("step_size", [0.1, 0.05, 0.25])
def test_time_grid(t0, step_size):
    grid = time_grid(t0, step_size=step_size)
    steps = num_steps(t0, step_size)
    assert steps == math.ceil(round((t0 - 1) / step_size, 6))
    assert len(grid) == steps + 1
    assert grid.dtype == torch.float32
    assert grid[0].item() == torch.tensor(t0, dtype=torch.float32).item()
    assert grid[-1].item() == 1.0
    assert bool((grid[1:] < grid[:-1]).all())
    # equal spacing, no near-zero steps
    d = grid[:-1] - grid[1:]
    assert d.min().item() > 0.9 * (t0 - 1) / steps


def test_time_grid_edge_cases():
    assert time_grid(1.0).tolist() == [1.0]
    assert len(time_grid(3.0)) == 2  # one step without steps/step_size
    assert len(time_grid(3.0, steps=5, step_size=0.1)) == 6  # steps wins
    with pytest.raises(ValueError):
        time_grid(0.5)
    with pytest.raises(ValueError):
        time_grid(2.0, steps=0)


@pytest.mark.parametrize("t0", [1.1, 1.2, 2.4])
@pytest.mark.parametrize("method", list(FIXED_METHODS))
def test_exact_nfe(func, t0, method):
    y0 = torch.rand(1, 3, 6, 6, dtype=torch.float32)
    n = num_steps(t0, 0.1)
    sol = solve(func, y0, t0, method=method, step_size=0.1)
    assert sol.nfe == n * STAGES[method]
    assert len(sol.times) == n + 1
    assert sol.times[-1].item() == 1.0
    func.reset()
    sol = solve(func, y0, t0, method=method, steps=3)
    assert sol.nfe == func.nfe == 3 * STAGES[method]


def test_t0_equal_one_is_identity(func):
    y0 = torch.rand(1, 3, 6, 6)
    sol = solve(func, y0, 1.0, step_size=0.1, return_trajectory=True)
    assert sol.nfe == 0 and torch.equal(sol.image, y0) and sol.trajectory.shape[0] == 1


def test_dopri5_runs(func):
    y0 = torch.rand(1, 3, 6, 6)
    sol = solve(func, y0, 2.0, method="dopri5", rtol=1e-3, atol=1e-4)
    ref = solve(func, y0, 2.0, method="rk4", steps=50)
    assert sol.nfe > 0
    assert (sol.image - ref.image).abs().max() < 1e-2
    with pytest.raises(ValueError):
        solve(func, y0, 2.0, method="dopri5", checkpoint=True)
    with pytest.raises(ValueError):
        solve(func, y0, 2.0, method="bogus")


def _scalar_error(method: str, steps: int) -> float:
    # dy/dt = -t y^2 / 4, y(2) = 1  ->  y(t) = 1 / (1 + (t^2 - 4) / 8), y(1) = 8 / 5
    t0 = 2.0
    y0 = torch.ones(1, dtype=torch.float64)
    sol = solve(lambda t, y: -t * y * y / 4, y0, t0, method=method, steps=steps)
    exact = 8.0 / 5.0
    return abs(sol.image.item() - exact)


@pytest.mark.parametrize(
    "method,order", [("euler", 1), ("midpoint", 2), ("rk4", 4), ("rk4-classic", 4)]
)
def test_convergence_order(method, order):
    e1, e2 = _scalar_error(method, 8), _scalar_error(method, 16)
    observed = math.log2(e1 / e2)
    assert abs(observed - order) < 0.35, (e1, e2, observed)


def test_rk4_is_three_eighths_rule():
    # one step of dy/dt = t^4 from t0=2 to 1: 3/8 rule and classic RK4 weight the stages differently
    y0 = torch.zeros(1, dtype=torch.float64)
    f = lambda t, y: t**4 + 0 * y  # noqa: E731
    a = solve(f, y0, 2.0, method="rk4", steps=1).image.item()
    b = solve(f, y0, 2.0, method="rk4-classic", steps=1).image.item()
    t0, t1 = 2.0, 1.0
    h = t1 - t0
    three_eighths = h * (t0**4 + 3 * (t0 + h / 3) ** 4 + 3 * (t0 + 2 * h / 3) ** 4 + t1**4) / 8
    classic = h * (t0**4 + 4 * (t0 + h / 2) ** 4 + t1**4) / 6
    assert a == pytest.approx(three_eighths, abs=1e-12)
    assert b == pytest.approx(classic, abs=1e-12)


@pytest.mark.parametrize("method", list(FIXED_METHODS))
def test_checkpoint_matches_plain(func, method):
    y0 = torch.rand(2, 3, 8, 8)
    outs, grads = [], []
    for ckpt in (False, True, "eval"):
        func.zero_grad()
        x = y0.clone().requires_grad_(True)
        sol = solve(func, x, 1.35, method=method, step_size=0.1, checkpoint=ckpt)
        (sol.image**2).mean().backward()
        outs.append(sol.image.detach())
        grads.append([x.grad.clone()] + [p.grad.clone() for p in func.parameters()])
    for k in (1, 2):
        assert (outs[0] - outs[k]).abs().max() < 1e-6
        for g0, g1 in zip(grads[0], grads[k], strict=True):
            assert (g0 - g1).abs().max() < 1e-5


def test_backward_nfe_counting(func):
    y0 = torch.rand(1, 3, 8, 8)
    func.reset()
    sol = solve(func, y0, 1.3, method="rk4", step_size=0.1)
    assert sol.nfe == func.nfe == 12 and func.nfe_backward == 0
    sol.image.sum().backward()
    assert func.nfe_backward == 12
    func.reset()
    sol = solve(func, y0, 1.3, method="rk4", step_size=0.1, checkpoint=True)
    sol.image.sum().backward()
    assert sol.nfe == 12
    assert func.nfe == 24  # forward + recomputation during backward
    assert func.nfe_backward == 12
    func.reset()
    sol = solve(func, y0, 1.3, method="rk4", step_size=0.1, checkpoint="eval")
    sol.image.sum().backward()
    assert (sol.nfe, func.nfe, func.nfe_backward) == (12, 24, 12)
    with pytest.raises(ValueError):
        solve(func, y0, 1.3, checkpoint="layer")


def test_trajectory(func):
    y0 = torch.rand(1, 3, 6, 6)
    for ckpt in (False, True):
        sol = solve(
            func, y0, 1.5, method="euler", step_size=0.1, return_trajectory=True, checkpoint=ckpt
        )
        assert sol.trajectory.shape == (6, 1, 3, 6, 6)
        assert torch.equal(sol.trajectory[0], y0)
        assert torch.equal(sol.trajectory[-1], sol.image)


@pytest.mark.parametrize("method,steps", [("euler", 2), ("rk4", 1)])
def test_tiled_equals_untiled(func, method, steps):
    y0 = torch.rand(1, 3, 19, 22)
    t0 = 2.0
    overlap = safe_overlap(func.receptive_radius, t0, method, steps=steps)
    assert overlap == 3 * steps * STAGES[method]
    full = solve(func, y0, t0, method=method, steps=steps, return_trajectory=True)
    tiled = solve_tiled(
        func, y0, t0, tile=7, overlap=overlap, method=method, steps=steps, return_trajectory=True
    )
    assert tiled.nfe == full.nfe
    assert (tiled.image - full.image).abs().max() < 1e-4
    assert (tiled.trajectory - full.trajectory).abs().max() < 1e-4
    # too little overlap is visibly different (the test above is not vacuous)
    bad = solve_tiled(func, y0, t0, tile=7, overlap=1, method=method, steps=steps)
    assert (bad.image - full.image).abs().max() > 1e-6


def test_batch_matches_single(func):
    y0 = torch.rand(3, 3, 8, 8)
    batch = solve(func, y0, 1.7, method="rk4", step_size=0.1).image
    for i in range(3):
        one = solve(func, y0[i : i + 1], 1.7, method="rk4", step_size=0.1).image
        assert (one - batch[i : i + 1]).abs().max() < 1e-5


def test_channels_last_solve_keeps_psnr(monkeypatch, data_root):
    """The bundled model solved in channels_last (the default) and in contiguous NCHW: the
    PSNR is unchanged to 1e-3 dB (only float rounding differs)."""
    from odesr import ode
    from odesr.checkpoints import load_model
    from odesr.data import list_images, load_image
    from odesr.degrade import make_case
    from odesr.metrics import psnr

    model = load_model(None).eval()  # the bundled model
    hr = load_image(list_images("Set5", data_root)[0]).rgb[None, :, 100:196, 100:228]
    _, lr, case = make_case(hr, 2.0)
    rk4 = {"method": "rk4", "step_size": 1.0}
    seen = []
    model.func.net.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    fast = model.super_resolve(lr, 2.0, case.sr_size, solver=rk4).image
    monkeypatch.setattr(ode, "CONV_MEMORY_FORMAT", torch.contiguous_format)
    plain = model.super_resolve(lr, 2.0, case.sr_size, solver=rk4).image
    assert seen == [True] * 4 + [False] * 4  # the backbone's input, per evaluation
    assert (fast - plain).abs().max() < 1e-4
    assert abs(float(psnr(fast, hr, 2)[0]) - float(psnr(plain, hr, 2)[0])) < 1e-3


@pytest.mark.parametrize("weights", ["vdsr+t-2cad5064e4", "rdn+t-47fb334f18"])
def test_plus_t_runs_channels_last_and_keeps_psnr(monkeypatch, data_root, weights):
    """The +t nets' backbone takes its input in channels_last (as the ODE's state; 1.4-1.8x
    faster evaluation on this CPU) and gives the PSNR of contiguous NCHW to 1e-4 dB
    (published weights, a Set5 crop at x2 and x3.5)."""
    from baselines import plus_t
    from odesr.checkpoints import load_model
    from odesr.data import list_images, load_image
    from odesr.degrade import make_case
    from odesr.metrics import psnr
    from odesr.published import weights_dir

    model = load_model(weights_dir() / f"{weights}.pt").eval()
    hr = load_image(list_images("Set5", data_root)[1]).rgb[None, :, 60:180, 40:200]
    seen = []
    model.net.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    for scale in (2.0, 3.5):
        _, lr, case = make_case(hr, scale)
        fast = model.super_resolve(lr, scale, case.sr_size).image
        with monkeypatch.context() as m:
            m.setattr(plus_t, "CONV_MEMORY_FORMAT", torch.contiguous_format)
            plain = model.super_resolve(lr, scale, case.sr_size).image
        assert (fast - plain).abs().max() < 1e-4
        ref = hr[..., : fast.shape[-2], : fast.shape[-1]]
        shave = math.ceil(scale)
        assert abs(float(psnr(fast, ref, shave)[0]) - float(psnr(plain, ref, shave)[0])) < 1e-4
    assert seen == [True, False, True, False]
