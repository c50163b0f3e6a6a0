# Shared by the example scene scripts: depin builds each scene at test time with Blender
# (no binary blobs in the repository); the script saves it as <out_dir>/scene.blend.
import bpy, json, sys


def args():
    return json.loads(sys.argv[sys.argv.index("--") + 1])


def empty_scene(width, height, samples):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.frame_start = scene.frame_end = 1
    return scene


def material(name, shader, **inputs):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    node = nodes.new(shader)
    for key, value in inputs.items():
        node.inputs[key].default_value = value
    mat.node_tree.links.new(node.outputs[0], out.inputs["Surface"])
    return mat


def camera(location, rotation):
    bpy.ops.object.camera_add(location=location, rotation=rotation)
    cam = bpy.context.object
    bpy.context.scene.camera = cam
    return cam


def save(out_dir):
    bpy.ops.wm.save_as_mainfile(filepath=out_dir + "/scene.blend")
