"""A flight controller stand-in for the agent's MAVLink tests, built on
pymavlink (an implementation independent of ours): it streams a scripted
orbit as an autopilot does, at 10 Hz, over a byte stream or UDP.

    flight_controller.py --out stdout|udp:HOST:PORT --log FILE
        [--seconds S] [--center LAT,LNG] [--sign KEYHEX]
        [--forge KEYHEX] [--unsigned]

Each tenth of a second: HEARTBEAT (armed from the second second on),
GPS_RAW_INT (3D fix, 14 satellites, h_acc 1.2 m) and GLOBAL_POSITION_INT;
each second SYS_STATUS with 76 % battery. With --sign the stream is signed
with KEYHEX; --forge adds, each second, a position far away signed with
another key, and --unsigned one not signed at all (neither may count).
FILE gets one JSON document at the end: every position sent genuinely, as
[lat_e7, lon_e7], and how many bytes came back (the agent must send none).
"""

import argparse
import json
import math
import socket
import sys
import time

from pymavlink.dialects.v20 import common as mavlink2


class Udp:
    def __init__(self, host, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.peer = (host, port)

    def write(self, data):
        self.sock.sendto(bytes(data), self.peer)

    def received(self):
        self.sock.setblocking(False)
        total = 0
        try:
            while True:
                total += len(self.sock.recv(65536))
        except BlockingIOError:
            return total


class Stdout:
    def write(self, data):
        sys.stdout.buffer.write(bytes(data))
        sys.stdout.buffer.flush()

    def received(self):
        return 0


def signer(out, key_hex, system):
    mav = mavlink2.MAVLink(out, srcSystem=system, srcComponent=1)
    if key_hex:
        mav.signing.secret_key = bytes.fromhex(key_hex)
        mav.signing.link_id = 0
        # 10 µs units since 2015-01-01, as MAVLink 2 signing counts.
        mav.signing.timestamp = int((time.time() - 1420070400) * 100000)
        mav.signing.sign_outgoing = True
    return mav


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--center", default="4.711,-74.072")
    p.add_argument("--sign")
    p.add_argument("--forge")
    p.add_argument("--unsigned", action="store_true")
    a = p.parse_args()

    if a.out == "stdout":
        out = Stdout()
    else:
        host, port = a.out[len("udp:"):].rsplit(":", 1)
        out = Udp(host, int(port))
    fc = signer(out, a.sign, 1)
    forger = signer(out, a.forge, 1) if a.forge else None
    bare = signer(out, None, 1) if a.unsigned else None
    lat0, lng0 = (float(x) for x in a.center.split(","))
    sent = []
    steps = int(a.seconds * 10)
    start = time.time()
    for i in range(steps):
        t = i / 10.0
        # A 40 m orbit, one turn a minute.
        angle = 2 * math.pi * t / 60.0
        lat = lat0 + 40.0 / 111320.0 * math.sin(angle)
        lng = lng0 + 40.0 / (111320.0 * math.cos(math.radians(lat0))) * math.cos(angle)
        lat_e7, lng_e7 = int(round(lat * 1e7)), int(round(lng * 1e7))
        armed = t >= 1.0
        base_mode = mavlink2.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | (mavlink2.MAV_MODE_FLAG_SAFETY_ARMED if armed else 0)
        fc.heartbeat_send(mavlink2.MAV_TYPE_QUADROTOR, mavlink2.MAV_AUTOPILOT_PX4, base_mode, 0,
                          mavlink2.MAV_STATE_ACTIVE if armed else mavlink2.MAV_STATE_STANDBY)
        fc.gps_raw_int_send(int(t * 1e6), mavlink2.GPS_FIX_TYPE_3D_FIX, lat_e7, lng_e7, 2650000,
                            90, 140, 0, 0, 14, 2650000, 1200, 1800, 0, 0, 0)
        fc.global_position_int_send(int(t * 1000), lat_e7, lng_e7, 2690500, 40500, 0, 0, 0, 9000)
        sent.append([lat_e7, lng_e7])
        if i % 10 == 5:
            fc.sys_status_send(0, 0, 0, 200, 15800, 1200, 76, 0, 0, 0, 0, 0, 0)
            far = (int((lat0 + 0.5) * 1e7), int((lng0 + 0.5) * 1e7))
            for other in (forger, bare):
                if other is not None:
                    other.gps_raw_int_send(int(t * 1e6), mavlink2.GPS_FIX_TYPE_3D_FIX, far[0], far[1], 0,
                                           90, 140, 0, 0, 14, 0, 500, 0, 0, 0, 0)
                    other.global_position_int_send(int(t * 1000), far[0], far[1], 0, 0, 0, 0, 0, 0)
        delay = start + (i + 1) / 10.0 - time.time()
        if delay > 0:
            time.sleep(delay)
    with open(a.log, "w") as f:
        json.dump({"positions": sent, "received_bytes": out.received()}, f)


if __name__ == "__main__":
    main()
