"""cluster.yaml validates against the schema Ray's autoscaler ships (ray/autoscaler/ray-schema.json)."""
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_cluster_yaml_matches_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(CLUSTER.read_text())
    validate_config(prepare_config(config))  # as `ray up` does: defaults filled in, then the schema
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] >= 1 and workers["min_workers"] == 0  # GPU workers scale from zero
    assert "GPU" not in config["available_node_types"][config["head_node_type"]]["resources"]
    assert any("pip install" in c and "mcu_ray" in c for c in config["setup_commands"])


def test_schema_rejects_a_broken_config():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(CLUSTER.read_text())
    config["available_node_types"]["gpu_worker"]["min_workers"] = "zero"
    with pytest.raises(Exception, match="zero"):
        validate_config(prepare_config(config))
