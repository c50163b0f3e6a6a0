# Example 3: a 48-frame camera flight over a field of objects.
import bpy, math, os, sys
sys.path.insert(0, os.path.dirname(__file__))
import common

a = common.args()
scene = common.empty_scene(160, 90, 16)
scene.frame_start, scene.frame_end = 1, 48
bpy.ops.mesh.primitive_plane_add(size=40)
bpy.context.object.data.materials.append(
    common.material("ground", "ShaderNodeBsdfDiffuse", Color=(0.3, 0.45, 0.3, 1)))
colours = [(0.8, 0.2, 0.2, 1), (0.2, 0.5, 0.8, 1), (0.9, 0.8, 0.2, 1)]
mats = [common.material("m%d" % i, "ShaderNodeBsdfPrincipled", **{"Base Color": c})
        for i, c in enumerate(colours)]
for i in range(5):
    for j in range(5):
        x, y = (i - 2) * 3.0, (j - 2) * 3.0
        if (i + j) % 2:
            bpy.ops.mesh.primitive_cylinder_add(radius=0.5, depth=1.5 + (i * j) % 3, location=(x, y, 1))
        else:
            bpy.ops.mesh.primitive_ico_sphere_add(radius=0.7, subdivisions=2, location=(x, y, 0.7))
        bpy.context.object.data.materials.append(mats[(i * 5 + j) % 3])
bpy.ops.object.light_add(type="SUN", rotation=(0.8, 0.1, 0.3))
bpy.context.object.data.energy = 4
world = bpy.data.worlds.new("world")
world.color = (0.4, 0.5, 0.7)
scene.world = world
cam = common.camera((-10, -10, 4), (1.3, 0, -0.8))
cam.keyframe_insert("location", frame=1)
cam.keyframe_insert("rotation_euler", frame=1)
cam.location = (10, -9, 5)
cam.rotation_euler = (1.25, 0, 0.75)
cam.keyframe_insert("location", frame=48)
cam.keyframe_insert("rotation_euler", frame=48)
common.save(a["out_dir"])
