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
