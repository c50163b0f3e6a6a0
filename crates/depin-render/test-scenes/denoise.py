# A scene with Cycles denoising on (OpenImageDenoise): Debian's Blender cannot render it.
import bpy, os, sys
sys.path.insert(0, os.path.dirname(__file__))
import common

a = common.args()
scene = common.empty_scene(64, 48, 4)
scene.cycles.use_denoising = True
bpy.ops.mesh.primitive_cube_add()
common.camera((0, -6, 2), (1.25, 0, 0))
common.save(a["out_dir"])
