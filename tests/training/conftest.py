"""A tiny demo corpus shared by the training tests, and the overrides that make runs take seconds."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    from clsp.data.demo import build_demo

    root = tmp_path_factory.mktemp("demo")
    build_demo(root, seed=0, n_train=96, n_val=32, n_test=32, samples_per_shard=32)
    return root


@pytest.fixture
def fast(demo_root, tmp_path):
    """Overrides for a few-step CPU run on the tiny corpus, writing under tmp_path."""
    return [
        "data.batch_size=16", "data.num_workers=0", "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=3",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", f"run.output_dir={tmp_path}/runs",
    ]


@pytest.fixture
def demo(demo_root, fast):
    """`fast` plus pointing the demo recipe's corpus at the tiny one, with the settings it was built with (any
    other would rebuild the shared corpus under the tests that read it)."""
    return [f"data.demo.root={demo_root}", "data.demo.n_train=96", "data.demo.n_val=32", "data.demo.n_test=32",
            "data.demo.samples_per_shard=32", *fast]
