# depin's render driver: run by Blender inside the sandbox, never by a scene. It loads nothing
# itself; Blender has already opened the job's scene (with auto-run scripts disabled). It pins
# every setting that changes pixels so that any provider on the same Blender build renders
# the same image, then renders one frame (or one region of it) and reports in result.json.
import bpy, json, os, sys, traceback
import _cycles
sys.path.insert(0, os.path.dirname(__file__))
import scene_report

args = json.loads(sys.argv[sys.argv.index("--") + 1])
out_dir = args["out_dir"]



def edge(px, size):
    """A border edge that Blender's truncation puts exactly on pixel `px` of `size`."""
    return 1.0 if px >= size else (px + 0.5) / size

def finish(payload):
    with open(out_dir + "/result.json", "w") as f:
        json.dump(payload, f)


def fail(code, message):
    finish({"ok": False, "code": code, "message": message})
    sys.exit(0)


try:
    # The same checks as `inspect`, in the same Blender start: one scene load per render.
    info = scene_report.report(args["bundle_dir"])
    with open(out_dir + "/inspect.json", "w") as f:
        json.dump(info, f)
    if info["missing_files"]:
        finish({"ok": False, "code": "missing_files", "message": "",
                "missing_files": info["missing_files"]})
        sys.exit(0)
    if not info["has_camera"]:
        fail("no_camera", "the scene has no camera")
    scene = bpy.context.scene
    r = scene.render
    r.engine = "CYCLES"
    c = scene.cycles
    if args["device"] == "CPU":
        c.device = "CPU"
    else:
        prefs = bpy.context.preferences.addons["cycles"].preferences
        try:
            prefs.compute_device_type = args["device"]
        except TypeError:
            fail("device_unavailable", "this Blender has no %s backend" % args["device"])
        prefs.get_devices()
        gpus = [d for d in prefs.devices if d.type == args["device"]]
        if not gpus:
            fail("device_unavailable", "no %s device found" % args["device"])
        for d in prefs.devices:
            d.use = d.type == args["device"]
        c.device = "GPU"
    c.seed = args["seed"]
    c.use_animated_seed = False
    # `depin render local` may keep the scene's own sample count (no separate inspect run).
    if args.get("samples") is not None:
        c.samples = args["samples"]
    c.use_adaptive_sampling = False
    c.use_auto_tile = True
    c.tile_size = 2048
    r.threads_mode = "FIXED"
    r.threads = args["threads"]
    if args.get("resolution"):
        r.resolution_x, r.resolution_y = args["resolution"]
        r.resolution_percentage = 100
    width = r.resolution_x * r.resolution_percentage // 100
    height = r.resolution_y * r.resolution_percentage // 100
    # Compositing and the sequencer work on the whole frame (glare, blur), so a region of
    # them is not the same region of the frame; the 8-bit dither is a per-buffer pattern.
    r.use_compositing = False
    r.use_sequencer = False
    r.dither_intensity = 0.0
    for name in dir(r):
        if name.startswith("use_stamp"):
            try:
                setattr(r, name, False)
            except (AttributeError, TypeError):
                pass
    # Each region is rendered in turn by the same Blender (the scene is loaded once): a
    # verifier's check regions cost one start, not one each.
    regions = args.get("regions") or []
    for x0, y0, x1, y1 in regions:
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            fail("bad_region", "region %d,%d,%d,%d is outside the %d×%d frame"
                 % (x0, y0, x1, y1, width, height))
    if args["denoise_off"]:
        c.use_denoising = False
    # The node passes what its probe found; `render local` lets the driver look (one start).
    has_denoise = args.get("denoise")
    if has_denoise is None:
        has_denoise = bool(getattr(_cycles, "with_openimagedenoise", False))
    if c.use_denoising and not has_denoise:
        fail("denoise_unavailable", "the scene denoises and this Blender has no OpenImageDenoise")
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    r.image_settings.color_depth = "8"
    r.image_settings.compression = 15
    scene.frame_set(args["frame"])
    if not regions:
        r.use_border = False
        r.filepath = out_dir + "/frame.png"
        bpy.ops.render.render(write_still=True)
    for i, (x0, y0, x1, y1) in enumerate(regions):
        r.use_border = True
        r.use_crop_to_border = True
        # Blender keeps the border as float32 and truncates border × size to whole pixels, so
        # an exact fraction can land a pixel short (0.9 × 360 = 323.99997); half a pixel in
        # keeps every edge on its pixel. Rows count from the bottom in Blender, from the top
        # in a region.
        r.border_min_x = edge(x0, width)
        r.border_max_x = edge(x1, width)
        r.border_min_y = edge(height - y1, height)
        r.border_max_y = edge(height - y0, height)
        r.filepath = out_dir + "/region-%d.png" % i
        bpy.ops.render.render(write_still=True)
    finish({"ok": True, "width": width, "height": height, "samples": c.samples,
            "blender": bpy.app.version_string})
except SystemExit:
    raise
except Exception as e:  # noqa: BLE001 - every failure must reach the node as a result
    fail("blender_error", "%s: %s" % (type(e).__name__, traceback.format_exc(limit=3)))
