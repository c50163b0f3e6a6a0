# depin's scene report, shared by the inspector and the render driver: what the node checks
# before it renders (the files the scene needs, the frame range and size, the features that
# need a capability). Runs inside the sandbox with the scene's own scripts disabled.
import bpy, os


def report(bundle_dir):
    bundle = os.path.realpath(bundle_dir)
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
    return report
