# depin's scene inspector: writes the scene report (see scene_report.py) as inspect.json.
import json, os, sys
sys.path.insert(0, os.path.dirname(__file__))
import scene_report

args = json.loads(sys.argv[sys.argv.index("--") + 1])
with open(args["out_dir"] + "/inspect.json", "w") as f:
    json.dump(scene_report.report(args["bundle_dir"]), f)
