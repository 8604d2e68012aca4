#!/usr/bin/python3
"""Publishes over WHIP with GStreamer's webrtcbin, as Debian's simple-whip-client
would (it cannot run on Debian 12: it links libsoup 2.4 while libnice pulls in
libsoup 3 through gupnp-igd, and libsoup aborts with both in one process).

webrtcbin is a WebRTC stack of its own (libnice ICE, OpenSSL DTLS, GStreamer's
SRTP and RTP), beside Chromium's and FFmpeg's. x264 constrained baseline and
Opus from test sources, send-only, candidates in the offer (no trickle), the
offer POSTed with the stream key as bearer, the answer applied; after
`seconds` the session URL is DELETEd. Prints one JSON line: the POST's status,
the session URL, the ICE connection states seen, the DELETE's status, errors
(a pipeline error ends the run at once).

  /usr/bin/python3 whip_webrtcbin.py --url http://host:8080/whip/<stream> \\
      --key <stream key> [--seconds 12]
"""
import argparse
import json
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

PIPELINE = (
    "webrtcbin name=w bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=180,framerate=30/1 ! videoconvert ! queue "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=500 "
    "! video/x-h264,profile=constrained-baseline "
    "! rtph264pay config-interval=-1 pt=96 aggregate-mode=zero-latency ! queue "
    "! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! w. "
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue "
    "! opusenc ! rtpopuspay pt=111 ! queue "
    "! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w."
)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--seconds", type=int, default=12)
    args = p.parse_args()

    Gst.init(None)
    pipeline = Gst.parse_launch(PIPELINE)
    w = pipeline.get_by_name("w")
    loop = GLib.MainLoop()
    report = {"ice": [], "errors": []}
    posted = []

    def fail(why):
        report["errors"].append(why)
        loop.quit()

    def offered(promise, _element, _data):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply and reply.has_field("offer") else None
        if offer is None:
            fail(f"no offer: {reply.to_string() if reply else None}")
            return
        w.emit("set-local-description", offer, Gst.Promise.new())

    def negotiate(element):
        element.emit("create-offer", None, Gst.Promise.new_with_change_func(offered, element, None))

    def stop():
        try:
            url = urllib.parse.urljoin(args.url, report["location"])
            with urllib.request.urlopen(urllib.request.Request(url, method="DELETE")) as r:
                report["deleted"] = r.status
        except (urllib.error.URLError, KeyError) as e:
            report["errors"].append(f"DELETE: {e}")
        loop.quit()
        return False

    def post():
        sdp = w.get_property("local-description").sdp.as_text()
        req = urllib.request.Request(
            args.url,
            data=sdp.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp", "Authorization": "Bearer " + args.key},
        )
        try:
            with urllib.request.urlopen(req) as r:
                report["post"] = r.status
                report["location"] = r.headers.get("Location")
                answer = r.read().decode()
        except urllib.error.URLError as e:
            fail(f"POST: {e}")
            return False
        ok, msg = GstSdp.SDPMessage.new_from_text(answer)
        if ok != GstSdp.SDPResult.OK:
            fail("the answer is not SDP")
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        w.emit("set-remote-description", desc, Gst.Promise.new())
        GLib.timeout_add_seconds(args.seconds, stop)
        return False

    def gathering(element, _pspec):
        # No trickle: the offer goes with every candidate, once.
        state = element.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not posted:
            posted.append(True)
            GLib.idle_add(post)

    def ice(element, _pspec):
        report["ice"].append(element.get_property("ice-connection-state").value_nick)

    def on_message(_bus, message):
        if message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            fail(f"pipeline: {message.src.get_name()}: {err.message} ({debug})")

    # Send-only transceivers (WHIP publishes; the server answers recvonly).
    for i in range(2):
        t = w.emit("get-transceiver", i)
        if t is not None:
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
    w.connect("on-negotiation-needed", negotiate)
    w.connect("notify::ice-gathering-state", gathering)
    w.connect("notify::ice-connection-state", ice)
    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    GLib.timeout_add_seconds(args.seconds + 30, lambda: fail("timed out") or False)
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
