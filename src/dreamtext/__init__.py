"""dreamtext: text and image to 3D by distilling a 2D diffusion prior into a radiance field.

Python API (each name is imported on first use, so `import dreamtext` stays light):

    from dreamtext import (ImageTo3DConfig, export_workspace, image_to_3d, load_trained, preset_config,
                           render_workspace, text_to_3d)

    # text to 3D: the builtin preset (the built-in prior, sized for a CPU); any dotted key overrides it
    config = preset_config("builtin", "a red mug", {"iters": 600, "seed": 1})
    result = text_to_3d(config, "out/mug")            # result.metrics, result.workspace
    # image to 3D (DreamText: describe -> descriptor -> reconstruct), resumable stage by stage
    image_to_3d("photo.png", "out/photo", ImageTo3DConfig(method="dreamtext+reference"))
    # a finished workspace: its field, renderer and export settings; videos, views and meshes again
    scene = load_trained("out/mug")
    render_workspace("out/mug", frames=60, size=256)  # turntable.mp4/.gif and views/*.png
    export_workspace("out/mug", "out/mug.obj", texture=True)  # GLB, OBJ or PLY by suffix

    fit(FitConfig(data="scene/"), "out/fit")          # a field fitted to posed images (transforms.json)

Every function writes into its workspace folder atomically, continues a killed run with resume=True, and
raises `dreamtext.errors.DreamtextError` (one line) for bad input.

Package layout: README.md's "Package layout" lists the layers (errors, utils, scene, data, world, metrics,
prior, export, methods, gallery, viewer, batch, bench, cli); none imports a later one, and
tests/test_layout.py checks it against that order.
"""

__version__ = "0.1.0"

_API = {
    "fit": ("dreamtext.methods.fit", "fit"),
    "FitConfig": ("dreamtext.methods.fit", "FitConfig"),
    "text_to_3d": ("dreamtext.methods.text_to_3d", "text_to_3d"),
    "TextTo3DConfig": ("dreamtext.methods.text_to_3d", "TextTo3DConfig"),
    "preset_config": ("dreamtext.methods.presets", "preset_config"),
    "image_to_3d": ("dreamtext.methods.image_to_3d.pipeline", "image_to_3d"),
    "ImageTo3DConfig": ("dreamtext.methods.image_to_3d.pipeline", "ImageTo3DConfig"),
    "load_trained": ("dreamtext.methods.trained", "load_trained"),
    "render_workspace": ("dreamtext.methods.trained", "render_workspace"),
    "export_workspace": ("dreamtext.methods.trained", "export_workspace"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'dreamtext' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
