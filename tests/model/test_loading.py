"""Loading models (mri_lens.model.loading): a local Hugging Face directory with either backend, hub names and their
short aliases, one-line errors for what cannot be loaded, and the library versions every saved result records."""

from __future__ import annotations

import importlib.metadata
import shutil

import pytest
import torch

import mri_lens as ml
from mri_lens.errors import ModelAdapterError
from mri_lens.model import loading
from mri_lens.model.loading import HUB_ALIASES, library_versions, tl_major_version

CODE = "def f(x):\n    return x + 1\n"


@pytest.fixture(scope="module")
def reference():
    """transformers' own GPT-2 class on the tiny LM's directory, and the log-probabilities it gives ``CODE`` after
    BOS ``[1, n_tokens, vocab]``."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    d = ml.models.tiny_lm_dir()
    model = GPT2LMHeadModel.from_pretrained(d, local_files_only=True).eval()
    ids = torch.tensor([[0] + AutoTokenizer.from_pretrained(d, local_files_only=True)(CODE)["input_ids"]])
    with torch.inference_mode():
        return model, ids, torch.log_softmax(model(ids).logits, -1)


def test_a_directory_loads_its_own_weights_with_transformer_lens(reference):
    """TransformerLens (its loader folds layer norms and centres the unembedding, which moves logits by a constant
    per position) predicts the same next-token distribution as transformers from the same directory."""
    _, ids, want = reference
    model = ml.load_model(ml.models.tiny_lm_dir(), device="cpu")
    assert (model.cfg.n_layers, model.cfg.d_mlp, model.cfg.d_vocab) == (4, 512, 4096)
    with torch.inference_mode():
        got = torch.log_softmax(model(ids).float(), -1)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_a_directory_loads_its_own_weights_with_the_hf_backend(reference):
    ref, ids, _ = reference
    model = ml.load_model(ml.models.tiny_lm_dir(), device="cpu", backend="hf")
    assert isinstance(model, ml.HFModel) and not model.model.training
    assert model.tokenizer(CODE)["input_ids"] == ids[0, 1:].tolist()
    with torch.inference_mode():
        got = model.model(ids).last_hidden_state
        want = ref.transformer(ids).last_hidden_state
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["transformer_lens", "hf"])
def test_a_path_that_is_not_a_model_directory(tmp_path, monkeypatch, backend):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelAdapterError, match=r"^no model directory at './missing'$"):
        ml.load_model("./missing", device="cpu", backend=backend)
    copy = tmp_path / "copy"
    shutil.copytree(ml.models.tiny_lm_dir(), copy)
    (copy / "config.json").unlink()
    if backend == "hf" or tl_major_version() >= 3:
        expect = rf"^{str(copy)!r} is not a Hugging Face model directory \(no config.json\)$"
    else:  # TL 2 converts the directory itself: its missing file is the loader's OSError, one line
        expect = rf"^cannot load model {str(copy)!r}: "
    with pytest.raises(ModelAdapterError, match=expect) as e:
        ml.load_model(copy, device="cpu", backend=backend)
    assert "\n" not in str(e.value)


def test_hub_aliases_reach_the_loader_as_hub_ids(monkeypatch):
    """A short name (``"pythia-70m"``) is handed to the loader as its hub id; what the loader raises for a model it
    cannot fetch comes back as one line naming what the user typed, with the loader's error as its cause."""
    from transformers import AutoModel

    seen = []

    def offline(target, *args, **kwargs):  # records the id, then fails as the hub does with no network
        seen.append(target)
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {target}\nCheck your connection.")

    monkeypatch.setattr(AutoModel, "from_pretrained", offline)
    with pytest.raises(ModelAdapterError, match=r"^cannot load model 'pythia-70m': We couldn't connect") as e:
        ml.load_model("pythia-70m", device="cpu", backend="hf")
    assert seen == ["EleutherAI/pythia-70m"] == [HUB_ALIASES["pythia-70m"]]
    assert "\n" not in str(e.value) and isinstance(e.value.__cause__, OSError)
    with pytest.raises(ModelAdapterError):
        ml.load_model("EleutherAI/pythia-160m", device="cpu", backend="hf")
    assert seen[-1] == "EleutherAI/pythia-160m"  # a full hub id goes through as it is
    if tl_major_version() >= 3:
        from transformer_lens.model_bridge import TransformerBridge

        def boot(target, *args, **kwargs):
            seen.append(target)
            raise OSError("offline")

        monkeypatch.setattr(TransformerBridge, "boot_transformers", boot)
        with pytest.raises(ModelAdapterError, match=r"^cannot load model 'gelu-1l': offline$"):
            ml.load_model("gelu-1l", device="cpu")
        assert seen[-1] == "NeelNanda/GELU_1L512W_C4_Code"


def test_no_network_and_no_cached_copy_is_one_line(tmp_path):
    """The real hub client, offline (the tests run with HF_HUB_OFFLINE=1), with an empty cache."""
    with pytest.raises(ModelAdapterError, match=r"^cannot load model 'pythia-70m': ") as e:
        ml.load_model("pythia-70m", device="cpu", backend="hf", cache_dir=str(tmp_path))
    assert "\n" not in str(e.value) and isinstance(e.value.__cause__, OSError)
    assert not any(tmp_path.rglob("*.safetensors"))


def test_unknown_names_are_wrapped_but_bugs_are_not(monkeypatch):
    with pytest.raises(ModelAdapterError, match="cannot load model 'no-such-model-xyz': ") as e:
        ml.load_model("no-such-model-xyz", device="cpu")
    # the hub's OSError (TL >= 3), TL 2's own ValueError listing the names it knows: one line either way
    assert "\n" not in str(e.value) and isinstance(e.value.__cause__, (OSError, ValueError))

    def bug(*a, **k):
        raise TypeError("a bug in the loader")

    monkeypatch.setattr(loading, "_load_model", bug)
    with pytest.raises(TypeError, match="a bug in the loader"):
        ml.load_model("no-such-model-xyz", device="cpu")


def test_library_versions_are_the_installed_ones_and_saved_with_a_scan(tiny_scan):
    import transformers

    v = library_versions()
    assert set(v) == {"mri_lens", "transformer_lens", "transformers", "torch"}
    assert v["mri_lens"] == ml.__version__
    assert v["torch"] == torch.__version__ and v["transformers"] == transformers.__version__
    assert v["transformer_lens"] == importlib.metadata.version("transformer-lens")
    assert tiny_scan.meta["versions"] == v


def test_tl_major_version_is_the_installed_transformer_lens(monkeypatch):
    import importlib.util

    major = tl_major_version()
    assert major >= 2  # the declared dependency
    assert (major >= 3) == (importlib.util.find_spec("transformer_lens.model_bridge") is not None)  # TL 3 added it
    monkeypatch.setattr(loading, "_version", lambda dist: None)  # as if TransformerLens were not installed
    assert tl_major_version() == 0
    with pytest.raises(ModelAdapterError, match="TransformerLens is not installed: pip install transformer-lens"):
        ml.load_model(ml.models.tiny_lm_dir(), device="cpu")
