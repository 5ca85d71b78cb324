"""dreamtext: text and image to 3D by distilling a 2D diffusion prior into a radiance field.

Package map:
    scene    the 3D scene: cameras, rays, hash-grid field, background, occupancy grid, renderer
    export   meshes (GLB/OBJ/PLY), textures, turntable videos, named views
    world    the built-in world: analytic SDF scenes with ground truth
    data     loading user inputs (posed image sets)
    methods  jobs that train a field (fitting posed images, ...)
    bench    benchmarks that print JSON
    cli      the `dreamtext` command
"""

__version__ = "0.1.0"

# The Python API, imported on first use so that `import dreamtext` stays light.
_API = {
    "fit": ("dreamtext.methods.fit", "fit"),
    "FitConfig": ("dreamtext.methods.fit", "FitConfig"),
    "text_to_3d": ("dreamtext.methods.text_to_3d", "text_to_3d"),
    "preset_config": ("dreamtext.methods.presets", "preset_config"),
    "load_trained": ("dreamtext.methods.registry", "load_trained"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'dreamtext' has no attribute {name!r}")
