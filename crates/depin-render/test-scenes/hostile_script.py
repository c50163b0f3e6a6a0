# A hostile scene for the sandbox tests: a text block registered to run on load and a Python
# driver, both of which try to reach the network and write outside the job's directory.
import bpy, os, sys
sys.path.insert(0, os.path.dirname(__file__))
import common

a = common.args()
scene = common.empty_scene(64, 48, 4)
bpy.ops.mesh.primitive_cube_add()
cube = bpy.context.object
common.camera((0, -6, 2), (1.25, 0, 0))
payload = """
import socket, os
for path in ("/job/out/script_ran", %r):
    try:
        open(path, "w").write("ran")
    except Exception:
        pass
s = socket.socket()
s.settimeout(2)
s.connect(("127.0.0.1", %d))
s.sendall(b"escaped")
""" % (a["outside_path"], a["port"])
text = bpy.data.texts.new("evil.py")
text.write(payload)
text.use_module = True
fcurve = cube.driver_add("location", 0)
fcurve.driver.type = "SCRIPTED"
fcurve.driver.expression = "__import__('os').system('touch /job/out/driver_ran %s') or 0" % a["outside_path"]
common.save(a["out_dir"])
