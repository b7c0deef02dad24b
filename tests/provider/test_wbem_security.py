"""HTTP-level behaviour: authentication, bad bodies, limits; the server keeps serving."""

from __future__ import annotations

import base64
import http.client
import socket

import pytest
import pywbem
from wbem_support import USERS

GET_CLASS = (b'<?xml version="1.0" encoding="utf-8" ?>'
             b'<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="7" PROTOCOLVERSION="1.0">'
             b'<SIMPLEREQ><IMETHODCALL NAME="GetClass"><LOCALNAMESPACEPATH>'
             b'<NAMESPACE NAME="root"/><NAMESPACE NAME="ediv"/></LOCALNAMESPACEPATH>'
             b'<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="EDIV_Scenario"/></IPARAMVALUE>'
             b'%s</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')

BOMB = (b'<?xml version="1.0"?><!DOCTYPE CIM [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">'
        + b"".join(b'<!ENTITY %s "%s">' % (chr(98 + i).encode(), (b"&%s;" % chr(97 + i).encode())
                   * 10) for i in range(10))
        + b']><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0">'
          b'<SIMPLEREQ><IMETHODCALL NAME="GetClass"><LOCALNAMESPACEPATH><NAMESPACE NAME="&k;"/>'
          b'</LOCALNAMESPACEPATH></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')

XXE = (b'<?xml version="1.0"?><!DOCTYPE CIM [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b'<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0">'
       b'<SIMPLEREQ><IMETHODCALL NAME="GetClass"><LOCALNAMESPACEPATH><NAMESPACE NAME="&x;"/>'
       b'</LOCALNAMESPACEPATH></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')


# DSP0200 6.3.7: an extrinsic call's CIMObject names its target (here a class)
SERVICE_CLASS = "root%2Fediv%3AEDIV_VirtualSystemManagementService"


def _auth(role: str = "reader", password: str | None = None) -> str:
    name, real = USERS[role]
    token = base64.b64encode(f"{name}:{password or real}".encode()).decode()
    return f"Basic {token}"


def post(server, ssl_context, body: bytes, *, auth: str | None = "reader", method="GetClass",
         headers: dict | None = None, verb: str = "POST"):
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ssl_context, timeout=20)
    h = {"Content-Type": 'application/xml; charset="utf-8"', "CIMOperation": "MethodCall",
         "CIMMethod": method, "CIMObject": "root%2Fediv"}
    if auth:
        h["Authorization"] = _auth(auth) if auth in USERS else auth
    h.update(headers or {})
    try:
        conn.request(verb, "/cimom", body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.fixture
def still_serving(wbem_server, ssl_context):
    yield
    status, headers, body = post(wbem_server, ssl_context, GET_CLASS % b"")
    assert status == 200 and b'<CLASS NAME="EDIV_Scenario"' in body
    assert headers["CIMOperation"] == "MethodResponse"


def test_no_credentials_401(wbem_server, ssl_context, still_serving):
    status, headers, _ = post(wbem_server, ssl_context, GET_CLASS % b"", auth=None)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Basic realm="ediv"')


@pytest.mark.parametrize("auth", [
    _auth("reader", "wrong"),
    "Basic " + base64.b64encode(b"nobody:r-pass").decode(),
    "Basic !!!not-base64",
    "Bearer abc",
])
def test_wrong_credentials_401(wbem_server, ssl_context, still_serving, auth):
    status, headers, _ = post(wbem_server, ssl_context, GET_CLASS % b"", auth=auth)
    assert status == 401 and "WWW-Authenticate" in headers


def test_reader_calling_method_access_denied(wbem_server, ssl_context, still_serving):
    body = (b'<?xml version="1.0"?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
            b'<MESSAGE ID="9" PROTOCOLVERSION="1.0"><SIMPLEREQ><METHODCALL NAME="PlanScenario">'
            b'<LOCALCLASSPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>'
            b'<NAMESPACE NAME="ediv"/></LOCALNAMESPACEPATH>'
            b'<CLASSNAME NAME="EDIV_VirtualSystemManagementService"/></LOCALCLASSPATH>'
            b'</METHODCALL></SIMPLEREQ></MESSAGE></CIM>')
    status, _, out = post(wbem_server, ssl_context, body, method="PlanScenario",
                          headers={"CIMObject": SERVICE_CLASS})
    assert status == 200
    assert b'<ERROR CODE="2"' in out  # CIM_ERR_ACCESS_DENIED


@pytest.mark.parametrize("body, cimerror", [
    (b"<CIM><unclosed>", "request-not-well-formed"),
    (b"\x00\xff garbage", "request-not-well-formed"),
    (BOMB, "request-not-well-formed"),
    (XXE, "request-not-well-formed"),
    (b'<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0">'
     b"<SIMPLEREQ><BOGUS/></SIMPLEREQ></MESSAGE></CIM>", "request-not-valid"),
    (b"<html><body>hi</body></html>", "request-not-valid"),
])
def test_bad_bodies_400(wbem_server, ssl_context, still_serving, body, cimerror):
    status, headers, _ = post(wbem_server, ssl_context, body)
    assert status == 400
    assert headers["CIMError"] == cimerror


def _raw_request(server, ssl_context, head: bytes, body_chunks=()) -> bytes:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    with ssl_context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(4096)
            if not part:
                break
            data += part
        return data


def _head(extra: str) -> bytes:
    return ("POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\nCIMOperation: MethodCall\r\n"
            f"CIMMethod: GetClass\r\nAuthorization: {_auth()}\r\n{extra}\r\n").encode()


def test_oversized_body_413_without_reading_it(wbem_server, ssl_context, still_serving):
    limit = wbem_server.config.max_body_bytes
    # announced size over the limit: refused before a byte of the body is sent
    reply = _raw_request(wbem_server, ssl_context, _head(f"Content-Length: {limit + 1}\r\n"))
    assert reply.startswith(b"HTTP/1.1 413")


def test_oversized_chunked_body_413(wbem_server, ssl_context, still_serving):
    limit = wbem_server.config.max_body_bytes
    piece = b"x" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (limit // len(piece) + 2)
    reply = _raw_request(wbem_server, ssl_context,
                         _head("Transfer-Encoding: chunked\r\n"), [*chunks, b"0\r\n\r\n"])
    assert reply.startswith(b"HTTP/1.1 413")


def test_header_checks(wbem_server, ssl_context, still_serving):
    status, headers, _ = post(wbem_server, ssl_context, GET_CLASS % b"",
                              headers={"CIMOperation": "Nonsense"})
    assert status == 400 and headers["CIMError"] == "header-mismatch"
    status, headers, _ = post(wbem_server, ssl_context, GET_CLASS % b"", method="EnumerateClasses")
    assert status == 400 and headers["CIMError"] == "header-mismatch"
    status, headers, _ = post(wbem_server, ssl_context, GET_CLASS % b"",
                              headers={"CIMProtocolVersion": "2.0"})
    assert status == 501 and headers["CIMError"] == "unsupported-protocol-version"
    status, headers, _ = post(wbem_server, ssl_context, b"", verb="GET")
    assert status == 405 and "POST" in headers["Allow"]


def test_unknown_parameter_and_property(wbem_server, ssl_context, still_serving):
    bad = GET_CLASS % b'<IPARAMVALUE NAME="Bogus"><VALUE>1</VALUE></IPARAMVALUE>'
    status, _, out = post(wbem_server, ssl_context, bad)
    assert status == 200 and b'<ERROR CODE="4"' in out  # CIM_ERR_INVALID_PARAMETER
    get_prop = (b'<?xml version="1.0"?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
                b'<MESSAGE ID="3" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
                b'<IMETHODCALL NAME="GetProperty"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>'
                b'<NAMESPACE NAME="ediv"/></LOCALNAMESPACEPATH>'
                b'<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="EDIV_HostSystem">'
                b'<KEYBINDING NAME="CreationClassName"><KEYVALUE>EDIV_HostSystem</KEYVALUE>'
                b'</KEYBINDING><KEYBINDING NAME="Name"><KEYVALUE>host1</KEYVALUE></KEYBINDING>'
                b'</INSTANCENAME></IPARAMVALUE><IPARAMVALUE NAME="PropertyName"><VALUE>%s'
                b'</VALUE></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')
    status, _, out = post(wbem_server, ssl_context, get_prop % b"NoSuchProperty",
                          method="GetProperty")
    assert status == 200 and b'<ERROR CODE="12"' in out  # CIM_ERR_NO_SUCH_PROPERTY
    status, _, out = post(wbem_server, ssl_context, get_prop % b"MemoryMB", method="GetProperty")
    assert status == 200 and b"<VALUE>4096</VALUE>" in out


def test_plain_http_is_refused_on_tls_port(wbem_server):
    conn = http.client.HTTPConnection("127.0.0.1", wbem_server.port, timeout=10)
    try:
        conn.request("POST", "/cimom", body=GET_CLASS % b"")
        status = conn.getresponse().status
    except (ConnectionError, http.client.HTTPException, OSError):
        status = None
    finally:
        conn.close()
    assert status in (None, 400)


def test_embedded_object_goes_through_the_hardened_parser(wbem_server, ssl_context,
                                                          still_serving):
    from xml.sax.saxutils import escape

    def call(embedded: bytes) -> bytes:
        return (b'<?xml version="1.0"?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
                b'<MESSAGE ID="5" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
                b'<METHODCALL NAME="PlanScenario"><LOCALCLASSPATH><LOCALNAMESPACEPATH>'
                b'<NAMESPACE NAME="root"/><NAMESPACE NAME="ediv"/></LOCALNAMESPACEPATH>'
                b'<CLASSNAME NAME="EDIV_VirtualSystemManagementService"/></LOCALCLASSPATH>'
                b'<PARAMVALUE NAME="SystemSettings" PARAMTYPE="string" EmbeddedObject="instance">'
                b"<VALUE>" + escape(embedded.decode()).encode() + b"</VALUE></PARAMVALUE>"
                b"</METHODCALL></SIMPLEREQ></MESSAGE></CIM>")

    # method parameters are read by the method (XML or MOF): a bomb is an invalid parameter
    status, _, out = post(wbem_server, ssl_context, call(BOMB), auth="operator",
                          method="PlanScenario", headers={"CIMObject": SERVICE_CLASS})
    assert status == 200 and b'<ERROR CODE="16"' in out  # no method provider in this server
    from ediv.provider.embedded import EmbeddedParser
    from ediv.provider.schema import EDIV_NAMESPACE

    parser = EmbeddedParser(wbem_server.dispatcher.schema.namespace(EDIV_NAMESPACE))
    with pytest.raises(pywbem.CIMError) as err:
        parser.parse("SystemSettings", BOMB.decode(), "EDIV_ScenarioSettingData")
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    good = b'<INSTANCE CLASSNAME="EDIV_ScenarioSettingData"></INSTANCE>'
    assert parser.parse("SystemSettings", good.decode(), "EDIV_ScenarioSettingData").classname \
        == "EDIV_ScenarioSettingData"


def test_m_post_with_header_prefix(wbem_server, ssl_context, still_serving):
    status, _, body = post(
        wbem_server, ssl_context, GET_CLASS % b"", verb="M-POST",
        headers={"Man": "http://www.dmtf.org/cim/mapping/http/v1.0 ; ns=73",
                 "73-CIMOperation": "MethodCall", "73-CIMMethod": "GetClass",
                 "CIMOperation": "ignored"})
    assert status == 200 and b'<CLASS NAME="EDIV_Scenario"' in body


@pytest.mark.parametrize("old, new, status, cimerror", [
    (b'CIMVERSION="2.0"', b'CIMVERSION="3.0"', 501, "unsupported-cim-version"),
    (b'PROTOCOLVERSION="1.0"', b'PROTOCOLVERSION="9.0"', 501, "unsupported-protocol-version"),
    (b"<SIMPLEREQ>", b"<MULTIREQ><SIMPLEREQ>", 501, "multiple-requests-unsupported"),
])
def test_unsupported_versions_and_multireq_501(wbem_server, ssl_context, still_serving, old,
                                               new, status, cimerror):
    body = (GET_CLASS % b"").replace(old, new)
    if new.startswith(b"<MULTIREQ>"):
        body = body.replace(b"</SIMPLEREQ>", b"</SIMPLEREQ></MULTIREQ>")
    got, headers, _ = post(wbem_server, ssl_context, body)
    assert (got, headers.get("CIMError")) == (status, cimerror)


@pytest.mark.parametrize("headers, cimerror", [
    ({"CIMObject": "root%2Fcimv2"}, "header-mismatch"),  # the body is for root/ediv
    ({"CIMObject": "interop"}, "header-mismatch"),
    ({"Content-Type": "text/plain"}, "request-not-valid"),
])
def test_mismatched_cimobject_and_content_type_400(wbem_server, ssl_context, still_serving,
                                                   headers, cimerror):
    status, got, _ = post(wbem_server, ssl_context, GET_CLASS % b"", headers=headers)
    assert (status, got.get("CIMError")) == (400, cimerror)
    # text/xml is XML too, and the namespace may be written with a plain '/'
    status, _, _ = post(wbem_server, ssl_context, GET_CLASS % b"",
                        headers={"Content-Type": "text/xml", "CIMObject": "root/ediv"})
    assert status == 200
