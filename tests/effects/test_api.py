"""ablate / steer / neuron_effects on the real tiny LM (TransformerLens: TL 4 bridge or TL 2 HookedTransformer,
whichever is installed; and the Hugging Face backend) and MiniLM-L6, against hand-written hook oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mri_lens as ml

LAYER, NEURON = 1, 88


def _ids(model, text: str) -> list[int]:
    """BOS + the text's token ids, straight from the tokenizer (not through the adapter)."""
    tok = model.tokenizer
    return [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]


def _losses(logits, ids) -> np.ndarray:
    lp = torch.log_softmax(logits[0, :-1].float(), -1)
    return (-lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]).detach().numpy()


def tl_oracle(model, text: str, layer: int, neuron: int, value: float | None) -> np.ndarray:
    """Per-token next-token loss, one unpadded document, with a plain TransformerLens hook on
    ``blocks.{layer}.mlp.hook_post`` setting the neuron to ``value`` (None: no hook)."""
    ids = _ids(model, text)

    def hook(act, hook):
        act = act.clone()
        act[:, :, neuron] = value
        return act

    hooks = [] if value is None else [(f"blocks.{layer}.mlp.hook_post", hook)]
    with torch.no_grad():
        logits = model.run_with_hooks(torch.tensor([ids]), return_type="logits", fwd_hooks=hooks)
    return _losses(logits, ids)


def hf_oracle(hf_model, text: str, layer: int, neuron: int, value: float | None) -> np.ndarray:
    """The same with a torch forward hook on GPT-2's MLP activation module (whose output is the neuron), logits
    from the tied embedding."""
    gpt2 = hf_model.model
    ids = _ids(hf_model, text)

    def hook(module, args, out):
        out = out.clone()
        out[:, :, neuron] = value
        return out

    handle = gpt2.h[layer].mlp.act.register_forward_hook(hook) if value is not None else None
    try:
        with torch.no_grad():
            hidden = gpt2(input_ids=torch.tensor([ids])).last_hidden_state
    finally:
        if handle is not None:
            handle.remove()
    return _losses(hidden @ gpt2.wte.weight.T, ids)


def _doc_rows(eff, doc: int):
    return eff.table[eff.table["doc"] == doc]


@pytest.mark.parametrize("which", ["tl", "hf"])
def test_zero_ablation_equals_a_hand_written_hook(which, tiny, tiny_hf, docs):
    model, oracle = (tiny, tl_oracle) if which == "tl" else (tiny_hf, hf_oracle)
    eff = ml.effects.ablate(model, LAYER, [NEURON], texts=docs, how="zero", progress=False)
    for d, text in enumerate(docs):
        rows = _doc_rows(eff, d)
        assert len(rows) == len(_ids(model, text)) - 1  # every text token predicted, the BOS never
        np.testing.assert_allclose(rows["loss_before"], oracle(model, text, LAYER, NEURON, None), atol=1e-4)
        np.testing.assert_allclose(rows["loss_after"], oracle(model, text, LAYER, NEURON, 0.0), atol=1e-4)
    assert eff.loss_change == pytest.approx(float(eff.table["delta"].mean()))
    assert np.abs(eff.table["delta"]).max() > 1e-4  # the ablation changed something


def test_backends_agree(tiny, tiny_hf, docs):
    a = ml.effects.ablate(tiny, LAYER, [NEURON, 7], texts=docs, progress=False)
    b = ml.effects.ablate(tiny_hf, LAYER, [NEURON, 7], texts=docs, progress=False)
    np.testing.assert_allclose(a.table["loss_after"], b.table["loss_after"], atol=1e-4)
    np.testing.assert_allclose(a.logit_change, b.logit_change, atol=1e-4)


def test_table_names_each_predicted_token(tiny_hf, docs):
    eff = ml.effects.ablate(tiny_hf, LAYER, NEURON, texts=docs[:1], progress=False)
    ids = _ids(tiny_hf, docs[0])
    assert eff.table["position"].tolist() == list(range(1, len(ids)))
    assert eff.table["token_id"].tolist() == ids[1:]
    assert "".join(eff.table["token"]) == docs[0]


def test_padding_does_not_change_results(tiny_hf, docs):
    short, long = docs[1], docs[0] * 2
    alone = ml.effects.ablate(tiny_hf, LAYER, [NEURON], texts=[short], progress=False)
    padded = ml.effects.ablate(tiny_hf, LAYER, [NEURON], texts=[short, long], progress=False)
    rows = _doc_rows(padded, 0)
    assert len(rows) == len(alone.table)
    for col in ("loss_before", "loss_after", "delta"):
        np.testing.assert_allclose(rows[col], alone.table[col], atol=1e-5)


def test_padding_does_not_change_results_tl(tiny, docs):
    alone = ml.effects.ablate(tiny, LAYER, [NEURON], texts=[docs[1]], progress=False)
    padded = ml.effects.ablate(tiny, LAYER, [NEURON], texts=[docs[1], docs[0]], progress=False)
    np.testing.assert_allclose(_doc_rows(padded, 0)["loss_after"], alone.table["loss_after"], atol=1e-5)


def test_long_texts_are_measured_in_windows(tiny_hf, docs):
    eff = ml.effects.ablate(tiny_hf, LAYER, [NEURON], texts=[docs[0]], max_length=16, progress=False)
    n_text = len(_ids(tiny_hf, docs[0])) - 1
    assert len(eff.table) == n_text  # each window predicts its own text tokens; no token is dropped
    assert eff.table["position"].is_monotonic_increasing
    assert "".join(eff.table["token"]) == docs[0]


def test_steering_by_one_changes_nothing(tiny, docs):
    eff = ml.effects.steer(tiny, LAYER, [NEURON, 3], texts=docs, scale=1.0, progress=False)
    assert np.abs(eff.table["delta"]).max() == 0.0
    assert np.abs(eff.logit_change).max() == 0.0
    steered = ml.effects.steer(tiny, LAYER, [NEURON], texts=docs, value=5.0, progress=False)
    assert np.abs(steered.table["delta"]).max() > 1e-3


def test_steer_to_a_value_equals_the_oracle(tiny, docs):
    eff = ml.effects.steer(tiny, LAYER, NEURON, texts=docs[:1], value=3.0, progress=False)
    np.testing.assert_allclose(eff.table["loss_after"], tl_oracle(tiny, docs[0], LAYER, NEURON, 3.0), atol=1e-4)


@pytest.fixture(scope="module")
def small_scan(tiny, docs):
    return ml.scan(tiny, docs, top_k=1, progress=False)


def test_mean_ablation_uses_the_scans_means(tiny, small_scan, docs):
    mean = float(small_scan.stats.mean[small_scan.layer_index(LAYER), NEURON])
    eff = ml.effects.ablate(tiny, LAYER, [NEURON], texts=docs[:1], how="mean", scan=small_scan, progress=False)
    assert eff.values == [pytest.approx(mean)]
    np.testing.assert_allclose(eff.table["loss_after"], tl_oracle(tiny, docs[0], LAYER, NEURON, mean), atol=1e-4)
    zero = ml.effects.ablate(tiny, LAYER, [NEURON], texts=docs[:1], progress=False)
    assert not np.allclose(zero.table["loss_after"], eff.table["loss_after"], atol=1e-6)


def test_scan_documents_are_measured_on_their_stored_tokens(tiny, small_scan, docs):
    from_scan = ml.effects.ablate(tiny, LAYER, [NEURON], scan=small_scan, docs=[2, 0], progress=False)
    from_texts = ml.effects.ablate(tiny, LAYER, [NEURON], texts=docs, progress=False)
    keep = from_texts.table[from_texts.table["doc"].isin([0, 2])].reset_index(drop=True)
    np.testing.assert_allclose(from_scan.table["loss_after"], keep["loss_after"], atol=1e-5)
    assert from_scan.table["doc"].tolist() == keep["doc"].tolist()


def test_neuron_effects_on_top_and_random_documents(tiny, small_scan):
    ne = ml.effects.neuron_effects(tiny, small_scan, LAYER, NEURON, n_random=2, progress=False)
    top = set(small_scan.top_examples(LAYER, NEURON).docs.tolist())
    assert set(ne.top.table["doc"]) == top
    assert not set(ne.random.table["doc"]) & top
    assert list(ne.to_pandas()["examples"]) == ["top examples", "random"]


def test_top_logits_and_displays(tiny_hf, docs):
    eff = ml.effects.ablate(tiny_hf, LAYER, [NEURON], texts=docs, progress=False)
    top = eff.top_logits(5)
    assert list(top["direction"]) == ["up"] * 5 + ["down"] * 5
    ups, downs = top["logit_change"][:5].to_numpy(), top["logit_change"][5:].to_numpy()
    assert ups[0] == pytest.approx(eff.logit_change.max()) and downs[0] == pytest.approx(eff.logit_change.min())
    assert top["token"].iloc[0] == tiny_hf.tokenizer.decode([int(top["token_id"].iloc[0])])
    by_lp = eff.top_logits(3, by="logprob")
    assert by_lp["logprob_change"].iloc[0] == pytest.approx(eff.logprob_change.max())
    html = eff._repr_html_()
    assert "loss change" in html and "text-align:left" in html and "monospace" in html
    assert len(eff.figure().data) == 2
    assert eff.per_doc()["n_tokens"].sum() == len(eff.table)


def test_encoders_report_the_output_representation(minilm, docs):
    eff = ml.effects.ablate(minilm, LAYER, [NEURON], texts=docs, progress=False)
    assert eff.loss_change is None and eff.output_change > 0
    assert {"l2_change", "relative_change", "cosine"} <= set(eff.table.columns)
    assert eff.table["cosine"].max() <= 1 + 1e-5
    assert "no next-token loss" in eff._repr_html_()
    same = ml.effects.steer(minilm, LAYER, [NEURON], texts=docs, scale=1.0, progress=False)
    assert same.output_change == 0.0
    with pytest.raises(ValueError, match="no next-token logits"):
        eff.top_logits()


def test_encoder_change_equals_a_hand_written_hook(minilm, docs):
    from mri_lens.model import as_adapter, final_hook_name

    adapter = as_adapter(minilm)
    tok = minilm.tokenizer
    ids = [tok.cls_token_id] + tok(docs[1], add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    out = {}

    def zero(act, hook):
        act = act.clone()
        act[:, :, NEURON] = 0.0
        return act

    def grab(name):
        def hook(act, hook):
            out[name] = act.detach().clone()
        return hook

    with torch.no_grad():
        for name, extra in (("clean", []), ("edited", [(f"blocks.{LAYER}.mlp.hook_post", zero)])):
            minilm.run_with_hooks(torch.tensor([ids]), return_type=None,
                                  fwd_hooks=extra + [(final_hook_name(adapter), grab(name))])
    l2 = (out["edited"] - out["clean"])[0].norm(dim=-1).numpy()
    eff = ml.effects.ablate(minilm, LAYER, [NEURON], texts=[docs[1]], progress=False)
    np.testing.assert_allclose(eff.table["l2_change"], l2, atol=1e-4)


def test_bad_input_is_refused(tiny, small_scan, docs):
    with pytest.raises(ml.ModelAdapterError, match="neurons must be"):
        ml.effects.ablate(tiny, LAYER, [10_000], texts=docs)
    with pytest.raises(ml.ModelAdapterError, match="layers must be"):
        ml.effects.ablate(tiny, 9, [1], texts=docs)
    with pytest.raises(ml.ScanError, match="pass scan="):
        ml.effects.ablate(tiny, LAYER, [1], texts=docs, how="mean")
    with pytest.raises(ValueError, match="how must be"):
        ml.effects.ablate(tiny, LAYER, [1], texts=docs, how="half")
    with pytest.raises(ValueError, match="exactly one"):
        ml.effects.steer(tiny, LAYER, [1], texts=docs, value=1.0, scale=2.0)
    with pytest.raises(ValueError, match="one per neuron"):
        ml.effects.steer(tiny, LAYER, [1, 2, 3], texts=docs, value=[1.0, 2.0])
    with pytest.raises(ValueError, match="pass texts"):
        ml.effects.ablate(tiny, LAYER, [1])
    with pytest.raises(ml.ScanError, match="pass scan= too"):
        ml.effects.ablate(tiny, LAYER, [1], docs=[0])
