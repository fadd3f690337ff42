"""An IP camera stand-in for the agent's RTSP tests: GStreamer's own RTSP
server (Debian's gst-rtsp-server, through PyGObject) serves the SMPTE bars
as H.264 at rtsp://127.0.0.1:PORT/bars, behind basic authentication, as
fixed and PTZ cameras do.

    /usr/bin/python3 camera.py PORT USER PASSWORD

Prints `ready` once it listens; runs until killed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)

    factory = GstRtspServer.RTSPMediaFactory()
    # A camera's usual stream: H.264 main profile with B-frames, which the
    # agent must re-encode to constrained baseline for browsers.
    factory.set_launch(
        "( videotestsrc is-live=true pattern=smpte "
        "! video/x-raw,width=640,height=480,framerate=30/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 "
        "! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)

    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", user)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role(user)
    permissions.add_permission_for_role(user, "media.factory.access", True)
    permissions.add_permission_for_role(user, "media.factory.construct", True)
    factory.set_permissions(permissions)

    server.get_mount_points().add_factory("/bars", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
