# Example 2: a subdivided mesh with a procedural texture under a Nishita sky (no HDR file).
import bpy, os, sys
sys.path.insert(0, os.path.dirname(__file__))
import common

a = common.args()
scene = common.empty_scene(200, 150, 24)
bpy.ops.mesh.primitive_monkey_add(location=(0, 0, 1.2), rotation=(0.3, 0, 0.4))
monkey = bpy.context.object
mod = monkey.modifiers.new("subsurf", "SUBSURF")
mod.levels = mod.render_levels = 2
bpy.ops.object.shade_smooth()
mat = bpy.data.materials.new("textured")
mat.use_nodes = True
nodes, links = mat.node_tree.nodes, mat.node_tree.links
bsdf = nodes["Principled BSDF"]
noise = nodes.new("ShaderNodeTexNoise")
noise.inputs["Scale"].default_value = 6.0
noise.inputs["Detail"].default_value = 8.0
ramp = nodes.new("ShaderNodeValToRGB")
ramp.color_ramp.elements[0].color = (0.05, 0.2, 0.5, 1)
ramp.color_ramp.elements[1].color = (0.9, 0.7, 0.2, 1)
links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
bump = nodes.new("ShaderNodeBump")
links.new(noise.outputs["Fac"], bump.inputs["Height"])
links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
monkey.data.materials.append(mat)
bpy.ops.mesh.primitive_plane_add(size=30)
checker_mat = bpy.data.materials.new("checker")
checker_mat.use_nodes = True
cn = checker_mat.node_tree.nodes
checker = cn.new("ShaderNodeTexChecker")
checker.inputs["Scale"].default_value = 20.0
checker_mat.node_tree.links.new(checker.outputs["Color"], cn["Principled BSDF"].inputs["Base Color"])
bpy.context.object.data.materials.append(checker_mat)
world = bpy.data.worlds.new("sky")
world.use_nodes = True
sky = world.node_tree.nodes.new("ShaderNodeTexSky")
sky.sky_type = "NISHITA"
sky.sun_elevation = 0.5
world.node_tree.links.new(sky.outputs["Color"], world.node_tree.nodes["Background"].inputs["Color"])
world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.3
scene.world = world
bpy.ops.object.light_add(type="SUN", rotation=(0.7, 0.2, 0.5))
bpy.context.object.data.energy = 3
common.camera((0, -5, 2.2), (1.25, 0, 0))
common.save(a["out_dir"])
