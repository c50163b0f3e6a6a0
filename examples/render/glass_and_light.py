# Example 1 (cheapest): a few primitives, a glass sphere and an emissive cube on a floor.
import bpy, os, sys
sys.path.insert(0, os.path.dirname(__file__))
import common

a = common.args()
scene = common.empty_scene(160, 120, 16)
bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 0, 0))
bpy.context.object.data.materials.append(
    common.material("floor", "ShaderNodeBsdfDiffuse", Color=(0.6, 0.6, 0.55, 1)))
bpy.ops.mesh.primitive_uv_sphere_add(radius=1, location=(0, 0, 1), segments=48, ring_count=24)
bpy.ops.object.shade_smooth()
bpy.context.object.data.materials.append(
    common.material("glass", "ShaderNodeBsdfGlass", IOR=1.45, Roughness=0.0))
bpy.ops.mesh.primitive_cube_add(size=0.8, location=(1.8, 1.2, 0.4))
bpy.context.object.data.materials.append(
    common.material("lamp", "ShaderNodeEmission", Color=(1.0, 0.6, 0.3, 1), Strength=12.0))
bpy.ops.mesh.primitive_cube_add(size=1, location=(-1.8, 0.8, 0.5), rotation=(0, 0, 0.6))
bpy.context.object.data.materials.append(
    common.material("red", "ShaderNodeBsdfDiffuse", Color=(0.7, 0.1, 0.1, 1)))
bpy.ops.object.light_add(type="AREA", location=(0, -2, 5))
bpy.context.object.data.energy = 300
bpy.context.object.data.size = 3
world = bpy.data.worlds.new("world")
world.color = (0.05, 0.05, 0.08)
scene.world = world
common.camera((0, -6.5, 2.6), (1.2, 0, 0))
common.save(a["out_dir"])
