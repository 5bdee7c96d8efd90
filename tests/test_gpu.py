"""The CUDA path of the built-in train function. Skipped on machines without a GPU (CI)."""

import functools

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_trains_on_cuda(model, precision):
    from caviar import session
    from caviar.train.data import load
    from caviar.train.loop import train

    fn = functools.partial(train, data=load("mnist1d"), model=model)
    config = {
        "max_epochs": 3,
        "precision": precision,
        "batch_size": 256,
        "lr": 3e-3,
        "batch_norm": True,
    }
    results = session.run(fn, config, session.Session("val_acc")).results
    assert results[-1]["val_acc"] > 0.3 and not results[-1]["diverged"]


def test_population_members_train_as_they_would_alone_on_cuda():
    from caviar.train.data import load
    from caviar.train.population import Population

    data = load("synthetic")
    configs = [
        {"max_epochs": 3, "hidden": 32, "lr": 3e-3, "seed": 1},
        {"max_epochs": 3, "hidden": 64, "lr": 1e-2, "dropout": 0.3, "seed": 2},
        {"max_epochs": 3, "hidden": 48, "lr": 1e-3, "mixup_alpha": 0.4, "seed": 3},
    ]

    def train(members):
        population = Population(data, "mlp", device="cuda")
        # TF32 rounds batched and single matrix products differently; compare in fp32.
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        for i, c in members:
            population.add(i, c)
        history = {i: [] for i, _ in members}
        while len(population):
            for key, metrics, _, _ in population.train_epoch():
                history[key].append(metrics["val_loss"])
        return history

    together = train(list(enumerate(configs)))
    for i, c in enumerate(configs):
        assert together[i] == pytest.approx(train([(i, c)])[i], abs=1e-4)


@pytest.mark.integration
def test_a_fused_sweep_shares_the_gpu_between_groups(tmp_path, private_ray_tmp):
    """resources {gpu: 0.5, fuse: 4}: two groups of up to 4 member trials on one GPU, a real
    caviar sweep on a private Ray."""
    import pandas as pd
    import yaml

    from tests.conftest import QUICK_SPEC, caviar_cli

    raw = {
        **QUICK_SPEC,
        "space": {"lr": {"loguniform": [1e-4, 1e-1]}, "batch_size": {"choice": [32, 64]}},
        "budget": {"num_samples": 8},
        "resources": {"cpu": 1, "gpu": 0.5, "fuse": 4},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    out = caviar_cli("run", "spec.yaml", "--storage", "runs", "--name", "r", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "runs" / "r" / "trials.parquet")
    assert len(trials) == 8 and set(trials["status"]) <= {"completed", "early_stopped"}
    assert trials["gpu_model"].notna().all()  # the group's GPU, recorded on each member
