"""Push envelopes, signatures and parsing, and the deprecated encryptedData form."""

from __future__ import annotations

import base64
import json
import os

import pytest

from backend.wechat.crypto import (
    EncryptedDataInvalid,
    PushCrypto,
    PushRejected,
    check_url_signature,
    decrypt_encrypted_data,
    encrypt_encrypted_data,
    envelope_ciphertext,
    parse_push,
    sign,
)

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wxstandin00000001"


def test_the_signature_is_sha1_of_the_sorted_parts() -> None:
    # The worked example from WeChat's message-push guide: token, timestamp, nonce.
    import hashlib

    joined = "".join(sorted(["tok", "1409659813", "1372623149"]))
    expected = hashlib.sha1(joined.encode(), usedforsecurity=False)

    assert sign("tok", "1409659813", "1372623149") == expected.hexdigest()
    assert check_url_signature("tok", expected.hexdigest(), "1409659813", "1372623149")
    assert not check_url_signature("tok", expected.hexdigest(), "1409659814", "1372623149")
    assert not check_url_signature("tok", "", "1409659813", "1372623149")


def test_a_sealed_push_opens_with_the_same_keys() -> None:
    crypto = PushCrypto("tok", AES_KEY, APPID)
    encrypted, msg_signature = crypto.seal('{"Event": "x"}', "1700000000", "abc")

    assert crypto.open(encrypted, msg_signature, "1700000000", "abc") == '{"Event": "x"}'


@pytest.mark.parametrize(
    "change",
    ["signature", "timestamp", "ciphertext", "appid"],
)
def test_a_push_altered_in_any_part_is_rejected(change: str) -> None:
    crypto = PushCrypto("tok", AES_KEY, APPID)
    encrypted, msg_signature = crypto.seal("{}", "1700000000", "abc")
    timestamp = "1700000000"
    opener = crypto
    if change == "signature":
        msg_signature = ("0" if msg_signature[0] != "0" else "1") + msg_signature[1:]
    elif change == "timestamp":
        timestamp = "1700000001"
    elif change == "ciphertext":
        encrypted = base64.b64encode(os.urandom(64)).decode()
    else:
        opener = PushCrypto("tok", AES_KEY, "wx-another-app")

    with pytest.raises(PushRejected):
        opener.open(encrypted, msg_signature, timestamp, "abc")


def test_a_ciphertext_signed_correctly_but_not_ours_is_rejected() -> None:
    # The signature covers only the text: garbage that is properly signed must still fail.
    crypto = PushCrypto("tok", AES_KEY, APPID)
    garbage = base64.b64encode(os.urandom(64)).decode()

    with pytest.raises(PushRejected):
        crypto.open(garbage, sign("tok", "1", "n", garbage), "1", "n")


def test_an_encoding_aes_key_of_the_wrong_length_is_refused_at_start() -> None:
    with pytest.raises(ValueError):
        PushCrypto("tok", "short", APPID)


def test_the_envelope_is_read_from_json_and_from_xml() -> None:
    from_json = envelope_ciphertext(json.dumps({"ToUserName": "gh", "Encrypt": "abc="}).encode())
    from_xml = envelope_ciphertext(
        b"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[abc=]]></Encrypt></xml>"
    )

    assert from_json == from_xml == "abc="
    with pytest.raises(PushRejected):
        envelope_ciphertext(b'{"ToUserName": "gh"}')


def test_json_list_as_one_object_and_as_an_array_both_become_lists() -> None:
    one = parse_push(
        json.dumps(
            {
                "FromUserName": "o1",
                "CreateTime": 1700000000,
                "MsgType": "event",
                "Event": "subscribe_msg_popup_event",
                "List": {"TemplateId": "t1", "SubscribeStatusString": "accept", "PopupScene": 0},
            }
        )
    )
    several = parse_push(
        json.dumps(
            {
                "FromUserName": "o1",
                "CreateTime": "1700000000",
                "Event": "subscribe_msg_popup_event",
                "List": [
                    {"TemplateId": "t1", "SubscribeStatusString": "accept"},
                    {"TemplateId": "t2", "SubscribeStatusString": "reject"},
                ],
            }
        )
    )

    assert one.items == [{"TemplateId": "t1", "SubscribeStatusString": "accept", "PopupScene": "0"}]
    assert [i["TemplateId"] for i in several.items] == ["t1", "t2"]
    assert (
        (one.openid, one.create_time) == ("o1", 1700000000) == (several.openid, several.create_time)
    )


def test_xml_list_as_one_element_and_as_several_both_become_lists() -> None:
    template = (
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o2]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[subscribe_msg_change_event]]></Event>"
        "<SubscribeMsgChangeEvent>{}</SubscribeMsgChangeEvent></xml>"
    )
    item = (
        "<List><TemplateId>{}</TemplateId>"
        "<SubscribeStatusString>reject</SubscribeStatusString></List>"
    )

    one = parse_push(template.format(item.format("t1")))
    several = parse_push(template.format(item.format("t1") + item.format("t2")))

    assert one.items == [{"TemplateId": "t1", "SubscribeStatusString": "reject"}]
    assert [i["TemplateId"] for i in several.items] == ["t1", "t2"]
    assert one.event == "subscribe_msg_change_event"


def test_a_64_bit_msgid_sent_as_a_json_number_stays_exact_text() -> None:
    event = parse_push(
        '{"FromUserName": "o3", "CreateTime": 1, "Event": "subscribe_msg_sent_event",'
        ' "List": {"TemplateId": "t", "MsgID": 3395159288267931652, "ErrorCode": 0,'
        ' "ErrorStatus": "success"}}'
    )

    assert event.items[0]["MsgID"] == "3395159288267931652"
    assert event.items[0]["ErrorCode"] == "0"


def test_xml_with_an_entity_declaration_is_refused() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Event>&a;</Event></xml>'

    with pytest.raises(PushRejected):
        parse_push(bomb)


def test_encrypted_phone_data_decrypts_only_with_its_session_key_and_our_appid() -> None:
    session_key = base64.b64encode(os.urandom(16)).decode()
    iv = base64.b64encode(os.urandom(16)).decode()
    plain = {"phoneNumber": "13800000000", "countryCode": "86", "watermark": {"appid": APPID}}
    sealed = encrypt_encrypted_data(session_key, iv, plain)
    other_key = base64.b64encode(os.urandom(16)).decode()

    assert decrypt_encrypted_data(session_key, sealed, iv, APPID) == plain
    for args in [
        (other_key, sealed, iv, APPID),
        (session_key, sealed, iv, "wx-another-app"),
        (session_key, sealed[:-8], iv, APPID),
        (session_key, "not base64!", iv, APPID),
        (session_key, sealed, "short", APPID),
    ]:
        with pytest.raises(EncryptedDataInvalid):
            decrypt_encrypted_data(*args)
