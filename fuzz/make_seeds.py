#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ from the protocol examples (docs/protocol.md,
PROTOCOL.md), the record golden bytes of tests/test_serialize.cpp, the shipped config, and JWTs
signed with the fuzz_jwt target's secret. The seeds are committed; run this again only to change
them (it rewrites the directories). Standard library only."""
import base64
import hashlib
import hmac
import json
import pathlib
import shutil

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data.encode() if isinstance(data, str) else data)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def request_codec():
    # First byte: the action (0 send_message, 1 get_message, 2 make_call, 3 presence).
    requests = {
        "send_text": ("0", {"message_id": "m-1", "type": "text", "sender": "driver", "sender_id": "drv-42",
                            "text": "I'm at gate B", "data": {}}),
        "send_minimal": ("0", {"sender": "passenger", "text": "hi"}),
        "send_call_data": ("0", {"type": "call", "sender": "system",
                                 "data": {"call_id": "c-7f3a", "state": "ended", "end_reason": "completed",
                                          "from": "driver", "to": "passenger", "duration_ms": 60000}}),
        "send_reply_to": ("0", {"sender": "driver", "text": "x", "reply_to": "navietakie/v1/replies/app-1/r1",
                                "correlation_id": "42"}),
        "send_null_field": ("0", {"sender": "driver", "text": "x", "sender_id": None}),
        "send_unicode": ("0", {"sender": "driver", "text": "caf\u00e9 \U0001F695"}),
        "get_default": ("1", {}),
        "get_before": ("1", {"limit": 50, "before_seq": 17, "types": ["text", "call"], "sender": "driver",
                             "since": 1764160000000, "until": 1764160064000}),
        "get_after": ("1", {"limit": 200, "after_seq": 0, "types": []}),
        "get_both_cursors": ("1", {"before_seq": 5, "after_seq": 1}),
        "call_start": ("2", {"action": "start", "by": "driver"}),
        "call_start_id": ("2", {"action": "start", "call_id": "c-7f3a", "by": "passenger"}),
        "call_accept": ("2", {"action": "accept", "call_id": "c-7f3a", "by": "passenger"}),
        "call_get": ("2", {"action": "get"}),
        "call_end": ("2", {"action": "end", "call_id": "c-7f3a", "by": "driver"}),
        "presence_online": ("3", {"role": "driver", "online": True, "client_id": "drv-app-1"}),
        "presence_offline": ("3", {"role": "passenger", "online": False}),
    }
    for name, (action, body) in requests.items():
        write("fuzz_request_codec", name, action + compact(body))
    write("fuzz_request_codec", "escaped_unicode", '0{"sender":"driver","text":"\\u00e9\\ud83d\\ude95"}')
    write("fuzz_request_codec", "not_json", '0{"sender":')
    write("fuzz_request_codec", "deep_data", '0{"sender":"driver","text":"x","data":' + '{"a":' * 40 + "1" + "}" * 41)
    write("fuzz_request_codec", "number_out_of_range", '1{"limit":1e999}')


def record_decoder():
    # The version-1 golden bytes of tests/test_serialize.cpp.
    golden = {
        "message_v1": "01010000000300000000000000424b31070000000000000003000000000000006d2d3100010103000000000000"
                      "00702d390200000000000000686902000000000000007b7d7b5021c09a010000",
        "call_v1": "01010000000300000000000000424b310300000000000000632d3100010201005021c09a01000001a05f21c09a"
                   "01000001004a22c09a01000030c521c09a010000",
        "connection_v1": "01010000000300000000000000424b310400000000000000636c2d310101005021c09a010000",
        "presence_v1": "01010000000300000000000000424b31010000000101005021c09a0100000000",
    }
    for name, hex_bytes in golden.items():
        write("fuzz_record_decoder", name, bytes.fromhex(hex_bytes))
    huge = bytearray(bytes.fromhex(golden["message_v1"]))
    huge[5 + 2] = 0x10  # booking_code length 1 MiB + 3, in a record of 80 bytes
    write("fuzz_record_decoder", "message_length_1mib", bytes(huge))


def identity_stamp():
    stamps = {
        "driver": {"sub": "drv-42", "role": "driver", "booking": "BK123"},
        "passenger": {"sub": "pax-7", "role": "passenger", "booking": "BK123"},
        "service": {"sub": "support-tool", "role": "service"},
        "service_with_booking": {"sub": "svc", "role": "service", "booking": "BK1"},
    }
    for name, value in stamps.items():
        write("fuzz_identity_stamp", name, compact(value))
    write("fuzz_identity_stamp", "duplicate_key", '{"sub":"a","role":"service","role":"driver","booking":"BK1"}')
    write("fuzz_identity_stamp", "escaped_subject", '{"sub":"caf\\u00e9","role":"service"}')


# fuzz/fuzz_jwt.cpp verifies with this secret at this time.
JWT_SECRET = b"navietakie-fuzz-secret-0123456789abcdef"
JWT_NOW = 1764160000


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(header, claims, key=JWT_SECRET, digest=hashlib.sha256):
    signing_input = b64url(compact(header).encode()) + "." + b64url(compact(claims).encode())
    return signing_input + "." + b64url(hmac.new(key, signing_input.encode(), digest).digest())


def jwt():
    # Mode byte 0: a whole token follows. Odd: a header and claims follow, which the target signs
    # (1 HS256, 3 HS384, 5 HS512).
    driver = {"sub": "drv-42", "role": "driver", "booking": "BK123", "exp": JWT_NOW + 3600}
    hs256 = {"alg": "HS256", "typ": "JWT"}
    tokens = {
        "driver_hs256": token(hs256, driver),
        "service_hs384": token({"alg": "HS384", "typ": "JWT"},
                               {"sub": "svc-1", "role": "service", "exp": JWT_NOW + 60, "nbf": JWT_NOW - 10},
                               digest=hashlib.sha384),
        "passenger_hs512": token({"alg": "HS512", "typ": "JWT"},
                                 {"sub": "pax-7", "role": "passenger", "booking": "BK123", "exp": JWT_NOW + 10,
                                  "iat": JWT_NOW}, digest=hashlib.sha512),
        "expired": token(hs256, dict(driver, exp=JWT_NOW - 3600)),
        "not_yet_valid": token(hs256, dict(driver, nbf=JWT_NOW + 600)),
        "wrong_secret": token(hs256, driver, key=b"another-secret-another-secret-xx"),
        "bad_claims": token(hs256, {"sub": "", "role": "admin", "booking": "bad.code", "exp": "soon"}),
        "alg_none": b64url(b'{"alg":"none"}') + "." + b64url(compact(driver).encode()) + ".",
        "not_a_token": "hello",
    }
    for name, text in tokens.items():
        write("fuzz_jwt", name, "\x00" + text)
    signed = {
        "signed_driver": ("\x01", hs256, driver),
        "signed_service_hs512": ("\x05", {"alg": "HS512"}, {"sub": "svc", "role": "service", "exp": JWT_NOW}),
        "signed_fractional_exp": ("\x01", hs256, dict(driver, exp=JWT_NOW + 0.5, nbf=-1e300)),
        "signed_huge_exp": ("\x01", hs256, dict(driver, exp=2 ** 63, nbf=JWT_NOW - 2 ** 62)),
        "signed_exp_int64_max": ("\x01", hs256, dict(driver, exp=2 ** 63 - 1, nbf=-(2 ** 63))),
        "signed_extra_claims": ("\x03", {"alg": "HS384", "kid": "k1"},
                                dict(driver, iat=JWT_NOW, aud=["a", "b"], nested={"x": [1, None]})),
    }
    for name, (mode, header, claims) in signed.items():
        write("fuzz_jwt", name, mode + compact(header) + "\n" + compact(claims))


def topic_acl():
    # A selector byte (identity and access), then: filter, topic, client id, booking, grants.
    grants = ("*:pub:{prefix}/bookings/+/+, *:sub:{prefix}/bookings/+/events/#, "
              "*:sub:{prefix}/bookings/+/errors, *:sub:{prefix}/errors")
    cases = {
        "driver_publish": ("\x03", "navietakie/v1/bookings/BK123/events/#", "navietakie/v1/bookings/BK123/send_message",
                           "drv-app-1", "BK123", ""),
        "driver_subscribe_events": ("\x06", "navietakie/v1/bookings/BK123/events/#",
                                    "navietakie/v1/bookings/BK123/events/message", "drv-app-1", "BK123", ""),
        "passenger_read_other": ("\x01", "navietakie/v1/bookings/+/events/#", "navietakie/v1/bookings/BK9/events/call",
                                 "pax-app", "BK123", ""),
        "service_grants": ("\x05", "navietakie/v1/bookings/+/events/#", "navietakie/v1/bookings/BK1/events/presence",
                           "svc-1", "", grants),
        "shared_subscription": ("\x08", "$share/g/navietakie/v1/bookings/+/send_message",
                                "navietakie/v1/bookings/BK1/send_message", "svc-1", "", grants),
        "replies": ("\x07", "navietakie/v1/replies/app-1/#", "navietakie/v1/replies/app-1/r1", "app-1", "BK1", ""),
        "sys_topic": ("\x02", "#", "$SYS/broker/uptime", "c", "BK1", "svc:sub:#, bad entry"),
        "bad_filters": ("\x09", "a/#/b", "a/+/c", "bad/id", "bad.code", "x:pub:a/b#"),
    }
    for name, (selector, *fields) in cases.items():
        write("fuzz_topic_acl", name, selector + "\n".join(fields))


def config():
    write("fuzz_config", "bridge.conf", (HERE.parent / "config" / "bridge.conf").read_bytes())
    write("fuzz_config", "plugin_keys",
          "topic_prefix navietakie/v1\ndata_dir /var/lib/navietakie\nsync nometasync\nmap_size_mb 1024\n"
          "log_level debug\nhandlers false\nauth_service_grants *:pub:{prefix}/bookings/+/+, ops:sub:{prefix}/#\n")
    write("fuzz_config", "bad_values",
          "sync sometimes\nmap_size_mb -1\ncall_ring_timeout_s 99999999999999999999\nunknown_key 1\n")
    write("fuzz_config", "comments_and_spaces",
          "# comment\n\n   log_level   warn   # trailing\r\nmax_text_bytes\t4096\nmax_payload_bytes 65536\n")
    write("fuzz_config", "control_bytes", "client_id a\x01b\x7f\nbroker_url tcp://127.0.0.1:1883\n")


if __name__ == "__main__":
    shutil.rmtree(CORPUS, ignore_errors=True)
    for make in (request_codec, record_decoder, identity_stamp, jwt, topic_acl, config):
        make()
