# depin's capability probe: which Cycles devices and features this Blender has.
import bpy, json, sys
import _cycles

args = json.loads(sys.argv[sys.argv.index("--") + 1])
devices = ["CPU"]
for kind in ("CUDA", "OPTIX", "HIP"):
    try:
        if _cycles.available_devices(kind):
            devices.append(kind)
    except Exception:  # noqa: BLE001 - a backend this build lacks
        pass
with open(args["out_dir"] + "/probe.json", "w") as f:
    json.dump({
        "blender": bpy.app.version_string,
        "devices": devices,
        "denoise": bool(getattr(_cycles, "with_openimagedenoise", False)),
    }, f)
