"""The SMTP transport against a real server (aiosmtpd), with and without PIPELINING (RFC 2920):
the same mails arrive, and the same refusals come back, however the commands travel."""
from __future__ import annotations

import smtplib
from dataclasses import replace

import pytest

from infra.mail import SmtpTransport, send_pipelined
from infra.settings import SmtpConfig
from tests.support.servers import smtp_server
from workflow.composition import OutgoingMail
from workflow.delivery import PermanentMailError, ServerUnavailable, TransientMailError


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def server(request):
    with smtp_server() as (controller, handler):
        handler.pipelining = request.param
        yield controller, handler


def transport(controller) -> SmtpTransport:
    return SmtpTransport(SmtpConfig("smtp", host=controller.hostname, port=controller.port))


def invitation(number: int, to=("p@example.org",), cc=("d@example.org",)) -> OutgoingMail:
    return OutgoingMail(
        subject=f"Einladung {number}", text=f"Guten Tag,\n.{number} beginnt mit einem Punkt\n",
        html=f"<p>Einladung {number}</p>", sender="Berichte <berichte@example.org>",
        to=list(to), cc=list(cc), message_id=f"<rc.{number}@example.org>", language="de",
        rung="invitation")


def test_mails_arrive_whole_with_every_recipient(server):
    controller, handler = server
    with transport(controller).connect() as connection:
        assert connection.pipelining is handler.pipelining
        for number in (1, 2, 3):
            assert connection.send(invitation(number)) == {}
    assert [m["envelope_to"] for m in handler.messages] == [["p@example.org", "d@example.org"]] * 3
    first = handler.messages[0]["message"]
    assert first["Message-ID"] == "<rc.1@example.org>"
    assert first.get_body(("plain",)).get_content() == "Guten Tag,\n.1 beginnt mit einem Punkt\n"
    assert handler.messages[0]["envelope_from"] == "berichte@example.org"


def test_a_recipient_refused_beside_accepted_ones_comes_back_with_its_reply(server):
    controller, handler = server
    handler.refuse_recipients = {"d@example.org": "550 5.1.1 no such mailbox"}
    with transport(controller).connect() as connection:
        refused = connection.send(invitation(1))
    assert refused == {"d@example.org": "550 5.1.1 no such mailbox"}
    assert [m["envelope_to"] for m in handler.messages] == [["p@example.org"]]


def test_every_recipient_refused_is_a_refusal_for_good_and_the_next_mail_still_goes(server):
    controller, handler = server
    handler.refuse_recipients = {"p@example.org": "550 5.1.1 no such mailbox",
                                 "d@example.org": "553 5.1.3 bad address"}
    with transport(controller).connect() as connection:
        with pytest.raises(PermanentMailError) as refused:
            connection.send(invitation(1))
        assert set(refused.value.refused) == {"p@example.org", "d@example.org"}
        assert connection.send(invitation(2, to=["x@example.org"], cc=[])) == {}
    assert [m["message"]["Subject"] for m in handler.messages] == ["Einladung 2"]


@pytest.mark.parametrize("reply, error", [("554 5.7.1 rejected as spam", PermanentMailError),
                                          ("451 4.3.0 try again later", TransientMailError)])
def test_a_refusal_after_the_final_dot_keeps_the_session_usable(server, reply, error):
    controller, handler = server
    handler.fail_next = [reply]
    with transport(controller).connect() as connection:
        with pytest.raises(error, match=reply.split()[0]):
            connection.send(invitation(1))
        assert connection.send(invitation(2)) == {}
    assert [m["message"]["Subject"] for m in handler.messages] == ["Einladung 2"]


def test_a_refused_sender_refuses_the_mail_for_good(server):
    controller, handler = server
    handler.refuse_sender = "550 5.7.1 sender not allowed"
    with transport(controller).connect() as connection:
        with pytest.raises(PermanentMailError, match="sender not allowed"):
            connection.send(invitation(1))
    assert handler.messages == []


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-command-at-a-time"])
def test_a_mail_larger_than_the_server_takes_is_refused_for_good(pipelining):
    with smtp_server(data_size_limit=2000) as (controller, handler):
        handler.pipelining = pipelining
        with transport(controller).connect() as connection:
            large = replace(invitation(1), text="Ein langer Bericht.\n" * 200)
            with pytest.raises(PermanentMailError, match="552"):
                connection.send(large)
            assert connection.send(OutgoingMail(
                subject="Kurz", text="kurz", html="<p>kurz</p>", sender="berichte@example.org",
                to=["p@example.org"], cc=[], message_id="<rc.2@example.org>", language="de",
                rung="invitation")) == {}
    assert [m["message"]["Subject"] for m in handler.messages] == ["Kurz"]


def test_a_421_to_a_recipient_means_the_server_is_going_away(server):
    controller, handler = server
    handler.refuse_recipients = {"d@example.org": "421 4.3.2 shutting down"}
    with transport(controller).connect() as connection:
        with pytest.raises(ServerUnavailable) as away:
            connection.send(invitation(1))
    assert away.value.code == 421
    assert handler.messages == []


def test_a_pipelined_mail_is_dot_stuffed_and_arrives_unchanged():
    """Lines that begin with a dot are doubled on the wire (RFC 5321 4.5.2), so the server
    neither ends the mail early nor drops the dot."""
    raw = (b"Subject: Punkte\r\n\r\n.eins\r\n..zwei\r\n.\r\nEnde\r\n")
    with smtp_server() as (controller, handler):
        client = smtplib.SMTP(controller.hostname, controller.port)
        client.ehlo()
        assert client.has_extn("pipelining")
        assert send_pipelined(client, "berichte@example.org", ["p@example.org"], raw) == {}
        client.quit()
    [mail] = handler.messages
    assert mail["message"].get_content() == ".eins\r\n..zwei\r\n.\r\nEnde\r\n"


def test_a_server_that_offers_pipelining_gets_the_envelope_and_data_in_one_write(monkeypatch):
    writes = []
    write = smtplib.SMTP.send

    def recorded(client, data):
        writes.append(data if isinstance(data, bytes) else data.encode())
        return write(client, data)

    with smtp_server() as (controller, handler):
        with transport(controller).connect() as connection:
            monkeypatch.setattr(smtplib.SMTP, "send", recorded)
            connection.send(invitation(1))
    envelope, message = writes[:2]
    size = len(message) - len(b".\r\n")  # declared as sendmail declares it (RFC 1870)
    assert envelope == (b"MAIL FROM:<berichte@example.org> SIZE=%d\r\nRCPT TO:<p@example.org>"
                        b"\r\nRCPT TO:<d@example.org>\r\nDATA\r\n" % size)
    assert b"Message-ID: <rc.1@example.org>" in message and message.endswith(b"\r\n.\r\n")
    assert len(writes) == 3 and writes[2].upper() == b"QUIT\r\n"
    assert len(handler.messages) == 1
