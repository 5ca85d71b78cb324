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
