# A scene whose material reads image files that are not in its bundle.
import bpy, os, sys
sys.path.insert(0, os.path.dirname(__file__))
import common

a = common.args()
scene = common.empty_scene(64, 48, 4)
bpy.ops.mesh.primitive_cube_add()
mat = bpy.data.materials.new("textured")
mat.use_nodes = True
for i, path in enumerate(["/nonexistent/wood.png", "//textures/brick.png"]):
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    image = bpy.data.images.new("img%d" % i, 4, 4)
    image.source = "FILE"
    image.filepath = path
    node.image = image
bpy.context.object.data.materials.append(mat)
common.camera((0, -6, 2), (1.25, 0, 0))
common.save(a["out_dir"])
