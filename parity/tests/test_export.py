"""Every registered model's *export* rule table, on names MXNet itself writes: the seeded net is
exported by MXNet (arg:/aux: symbol names, fresh instance counters) and must convert to exactly the
weights its save_parameters layout converts to."""
from __future__ import annotations

import pytest
import torch

import converters
from parity.selection import EXPORT_FULL_ONLY, sweep_params

pytestmark = pytest.mark.oracle


@pytest.mark.parametrize("name", sweep_params("gluon", EXPORT_FULL_ONLY))  # MXNet's export layout
def test_export_layout_converts_to_the_same_weights(converted, name, tmp_path):
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    ref = converted(name)
    spec = ref.spec
    if "export" not in spec.rules:
        why = [n for n in spec.notes if "export" in n.lower()]
        if not why:
            pytest.fail(f"{name} registers no export-layout rules and its notes give no reason")
        pytest.skip(why[0])
    with mx.name.NameManager():  # fresh counters: layers outside any name scope (Simple Pose's head:
        # conv0.., batchnormcudnnoff0..) export the names a fresh process writes
        net = gcv.model_zoo.get_model(spec.source_model, pretrained=False, **spec.get_model_kwargs)
    net.load_parameters(str(ref.source))
    net.hybridize()
    net(mx.nd.zeros((1, 3, *(spec.seed_size or spec.preprocess.size))))
    net.export(str(tmp_path / "m"))
    exported = converters.convert(name, weights=tmp_path / "m-0000.params")
    assert exported.layout == "export"
    assert exported.state_dict.keys() == ref.state_dict.keys()
    different = [k for k in ref.state_dict if not torch.equal(exported.state_dict[k], ref.state_dict[k])]
    assert not different, different[:5]
