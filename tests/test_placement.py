"""Device and precision: every job computes where its Placement says, at its artifact's precision.

A global forward pre-hook records the device and dtype of every input, parameter and buffer
any module sees while a job runs (curve points through functional_call included), so a
stray CPU tensor in a CUDA job, or a float32 forward under bf16, is caught. The CUDA
variants are marked ``gpu`` and skip on machines without one.
"""
import pytest
import torch
from torch import nn

from mcu_ray import jobs
from mcu_ray.batches import shard
from mcu_ray.curves import load_point
from mcu_ray.placement import Placement
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.store import Store
from tests.helpers import tiny_digits_task

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]


class Seen:
    """Devices and dtypes of every tensor modules saw while active."""

    def __init__(self):
        self.devices, self.float_dtypes, self.weight_dtypes, self.linear_outputs = set(), set(), set(), set()

    def pre(self, module, args):
        weights = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        for tensor in [a for a in args if isinstance(a, torch.Tensor)] + weights:
            self.devices.add(tensor.device.type)
            if tensor.is_floating_point():
                self.float_dtypes.add(tensor.dtype)
        self.weight_dtypes |= {w.dtype for w in weights if w.is_floating_point()}

    def post(self, module, args, output):
        if isinstance(module, nn.Linear):
            self.linear_outputs.add(output.dtype)

    def __enter__(self):
        self.handles = [nn.modules.module.register_module_forward_pre_hook(self.pre),
                        nn.modules.module.register_module_forward_hook(self.post)]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def digits_plan(precision="fp32", methods=("ga", "npo", "bt")):
    task = tiny_digits_task(ratios=[10], methods=list(methods), precision=precision,
                            hparams={m: {"steps": 3} for m in methods})
    return make_plan(parse_spec({"name": "p", "settings": ["Met"], "points": 3, "tasks": [task]}))


def evaluated_alone(store, curve, t: float, placement) -> dict:
    """phi(t) of ``curve`` loaded into a fresh model and evaluated by the task itself, point by point (what
    ``evaluate_curve_serially`` may instead compute in one vectorised pass), at the curve's precision."""
    placement = jobs.placed(placement, curve)
    options = curve.options
    task, data = jobs.task_data(curve.task, options, curve.ratio)
    model = task.new_model(options, seed=0, placement=placement)
    with torch.no_grad():
        load_point(model, [placement.tensors(cp) for cp in jobs.control_points(store, curve)], t)
    context = task.eval_context(options, data, store.load_weights(curve.retrained), placement)
    return task.evaluate(model, options, data, context, placement)


def build_all(plan, store, placement):
    """Original, retrained, endpoints, one Bezier bend and its curve points, all on ``placement``."""
    for item in plan.originals.values():
        jobs.build_original(store, item, placement)
    for item in plan.retrained.values():
        jobs.build_retrained(store, item, placement)
    for item in plan.endpoints.values():
        jobs.build_endpoint(store, item, placement)
    curve = next(c for c in plan.curves.values() if c.trained and plan.endpoints[c.endpoint_1].method == "npo")
    jobs.build_bend(store, curve, placement)
    return curve, jobs.evaluate_curve_serially(store, curve, [0.5], placement)


@pytest.mark.parametrize("device", DEVICES)
def test_every_tensor_a_digits_job_touches_is_on_its_device(device, tmp_path):
    torch.set_num_threads(1)
    plan, store = digits_plan(), Store(str(tmp_path))
    with Seen() as seen:
        curve, rows = build_all(plan, store, Placement(device))
    assert seen.devices == {device}
    assert seen.float_dtypes == {torch.float32}
    # artifacts are CPU safetensors whatever the device: they load anywhere
    assert all(t.device.type == "cpu" for t in store.load_weights(jobs.bend_key(curve)).values())
    assert store.read_meta(curve.endpoint_1)["device"] == device
    # the point's test accuracy is its own (360 test images: one that flips between passes moves it 1/360)
    assert rows[0]["acc_test"] == pytest.approx(evaluated_alone(store, curve, 0.5, Placement(device))["acc_test"],
                                                abs=1 / 360 + 1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_every_tensor_a_tofu_job_touches_is_on_its_device(device, tmp_path):
    torch.set_num_threads(1)
    task = {"name": "tofu", "ratios": [10], "methods": ["gd", "npo"],
            "options": {"synthetic_authors": 4, "eval_size": 8, "n_layer": 1, "n_embd": 32, "vocab_size": 300,
                        "epochs": 1, "max_new_tokens": 4},
            "hparams": {"gd": {"steps": 2}, "npo": {"steps": 2}}, "curve_fit": {"epochs": 1, "batch_size": 8}}
    plan = make_plan(parse_spec({"name": "p", "settings": ["Met"], "points": 3, "tasks": [task]}))
    store = Store(str(tmp_path))
    with Seen() as seen:
        for item in [*plan.originals.values(), *plan.retrained.values(), *plan.endpoints.values()]:
            builder = {"Original": jobs.build_original, "Retrained": jobs.build_retrained}.get(
                type(item).__name__, jobs.build_endpoint)
            builder(store, item, Placement(device))
        curve = next(c for c in plan.curves.values() if c.trained)
        jobs.build_bend(store, curve, Placement(device))
        jobs.evaluate_curve_serially(store, curve, [0.5], Placement(device))
    assert seen.devices == {device}


def test_bf16_mixed_computes_in_bf16_and_keeps_fp32_weights(tmp_path):
    """Autocast on the CPU: linear layers output bf16, master weights and artifacts stay float32."""
    torch.set_num_threads(1)
    plan, store = digits_plan("bf16-mixed", methods=("ga", "npo")), Store(str(tmp_path))
    with Seen() as seen:
        curve, _ = build_all(plan, store, Placement("cpu"))
    assert seen.linear_outputs == {torch.bfloat16}
    assert seen.weight_dtypes == {torch.float32}  # autocast casts inside each op; the weights stay fp32
    assert {t.dtype for t in store.load_weights(curve.endpoint_1).values() if t.is_floating_point()} == {torch.float32}
    assert store.read_meta(curve.endpoint_1)["precision"] == "bf16-mixed"


def test_bf16_stores_bf16_weights_and_keys_differ_by_precision(tmp_path):
    torch.set_num_threads(1)
    plan = digits_plan("bf16", methods=("ga", "npo"))
    store = Store(str(tmp_path))
    with Seen() as seen:
        curve, rows = build_all(plan, store, Placement("cpu"))
    assert seen.float_dtypes == {torch.bfloat16}
    assert {t.dtype for t in store.load_weights(curve.endpoint_1).values() if t.is_floating_point()} == {torch.bfloat16}
    fp32 = digits_plan("fp32", methods=("ga", "npo"))
    assert set(plan.endpoints).isdisjoint(fp32.endpoints) and set(plan.originals).isdisjoint(fp32.originals)
    assert rows[0]["acc_test"] == pytest.approx(evaluated_alone(store, curve, 0.5, Placement("cpu"))["acc_test"],
                                                abs=1 / 360 + 1e-9)


def test_precision_auto_follows_the_gpu_request():
    base = {"name": "p", "tasks": [tiny_digits_task()]}
    assert parse_spec(base).tasks[0].precision == "fp32"
    gpu = parse_spec({**base, "resources": {"train": {"num_workers": 1, "use_gpu": True}}})
    assert gpu.tasks[0].precision == "bf16-mixed"
    mixed = parse_spec({**base, "precision": "bf16", "tasks": [tiny_digits_task(precision="fp32")]})
    assert mixed.precision == "bf16" and mixed.tasks[0].precision == "fp32"


def test_shards_of_a_batch_cover_it_in_order_and_accumulation_matches_workers():
    batch = {"x": torch.arange(10)}
    parts = [shard(batch, i, 4)["x"].tolist() for i in range(4)]
    assert parts == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]
    one_worker = Placement("cpu", grad_accum=4).micro_batches(batch)
    two_workers = [m for rank in (0, 1) for m in Placement("cpu", rank=rank, world_size=2, grad_accum=2)
                   .micro_batches(batch)]
    assert [m["x"].tolist() for m in one_worker] == [m["x"].tolist() for m in two_workers] == parts


def test_a_cuda_placement_keeps_attention_off_cudnn():
    """cuDNN's attention builds a plan per sequence length (0.3 s of a 0.5 s phi-1.5 step on an H200)."""
    torch.backends.cuda.enable_cudnn_sdp(True)
    try:
        Placement(device="cpu")
        assert torch.backends.cuda.cudnn_sdp_enabled()  # a CPU placement leaves the process as it was
        Placement(device="cuda")  # a device name: no GPU needed to build it
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)
