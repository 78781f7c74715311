"""The laundering study's ``tae-4ch`` variant (issue #14): the SD-regime world, checked by
validation only (its run takes tens of minutes; docs/study.md records one).

What must hold: laundered images and both tiny-ldm-tae4ch classes go through fzoo-tae-4ch (the
paper's hard case: one decoder for laundered and synthetic), a second synthetic family with its
own decoder (tiny-ldm on fzoo-tiny-vae) joins the synthetic class of the ternary task, and every
reconstruction feature and laundering condition names the same autoencoder.
"""

from __future__ import annotations

from fzoo.config import load_experiment


def _names(components) -> list[str]:
    return [c.name for c in components]


def test_tae_4ch_variant_swaps_the_whole_world() -> None:
    exp = load_experiment("laundering-study", variant="tae-4ch")
    spec = exp.spec
    derive = {d.label: d for d in spec.data.derive}
    assert derive["laundered"].launderer.name == "fzoo-tae-4ch"
    assert derive["synthetic-noise"].generator.name == "tiny-ldm-tae4ch"
    assert derive["synthetic-img2img"].generator.name == "tiny-ldm-tae4ch"
    assert derive["synthetic-img2img"].generator.params == {"strength": 0.6}
    assert derive["synthetic-other"].generator.name == "tiny-ldm"  # its own decoder
    assert derive["synthetic-other"].n == 60
    ternary = next(t for t in spec.tasks if t.name == "ternary")
    assert "synthetic-other" in str(ternary.classes)
    conditions = {c.name: c for c in spec.conditions}
    assert conditions["laundered"].launderer.name == "fzoo-tae-4ch"
    assert conditions["laundered-x2"].launderer.params == {"iterations": 2}
    assert conditions["fzoo-tiny-vae"].launderer.name == "fzoo-tiny-vae"
    for pipe in spec.pipelines:
        for feat in pipe.features:
            if feat.name == "recon-error":
                assert feat.params["launderers"] == ["fzoo-tae-4ch"], pipe.name
            if feat.name.startswith("mandelli2024"):
                labels = feat.params.get("positive", []) + (feat.params.get("fit_on") or [])
                assert "synthetic-other" in labels, pipe.name
    assert "recon_error_auc_laundered_vs_other" in spec.headline
    # the default study is unchanged: fzoo-tiny-vae and tiny-ldm, three derived classes
    base = load_experiment("laundering-study").spec
    assert [d.label for d in base.data.derive] == [
        "laundered",
        "synthetic-noise",
        "synthetic-img2img",
    ]
    assert base.data.derive[0].launderer.name == "fzoo-tiny-vae"
