# depin's scene inspector: run by Blender inside the sandbox on a job's scene (auto-run scripts
# disabled). Reports what the node checks before it renders: the files the scene needs, the
# frame range and size, and the features that need a capability (denoising, the engine).
import bpy, json, os, sys

args = json.loads(sys.argv[sys.argv.index("--") + 1])
bundle = os.path.realpath(args["bundle_dir"])
scene = bpy.context.scene
r = scene.render
needed = []
missing = []
for path in sorted(set(bpy.utils.blend_paths(absolute=True, packed=False, local=False))):
    real = os.path.realpath(path)
    inside = real == bundle or real.startswith(bundle + os.sep)
    shown = os.path.relpath(real, bundle) if inside else path
    needed.append(shown)
    if not inside or not os.path.exists(real):
        missing.append(shown)
needed.sort()
missing.sort()
report = {
    "blender": bpy.app.version_string,
    "scene": scene.name,
    "engine": r.engine,
    "frame_start": scene.frame_start,
    "frame_end": scene.frame_end,
    "width": r.resolution_x * r.resolution_percentage // 100,
    "height": r.resolution_y * r.resolution_percentage // 100,
    "samples": scene.cycles.samples,
    "denoise": bool(scene.cycles.use_denoising),
    "has_camera": scene.camera is not None,
    "needed_files": needed,
    "missing_files": missing,
}
with open(args["out_dir"] + "/inspect.json", "w") as f:
    json.dump(report, f)
