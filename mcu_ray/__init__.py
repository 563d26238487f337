"""mcu_ray: mode connectivity in machine unlearning, as a resumable Ray grid."""
__version__ = "0.1.0"
