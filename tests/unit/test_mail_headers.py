"""Headers of outgoing mail: RFC 2047 encoded-words that every reader decodes back."""
from email import message_from_bytes, policy

import pytest

from infra.mail import encoded_words, mime_bytes
from workflow.composition import OutgoingMail

SUBJECTS = [
    "Einladung",
    "Erinnerung: Jahresbericht 2027 zur Interkulturellen Öffnung – bitte bis 30.04.2027 "
    "einreichen (Städtekooperation Integration.Interkommunal, Gelsenkirchen, Bochum)",
    "Reminder: your annual report for the initiative is due on 30 April 2027, please send it "
    "through the link in this mail",
    "ÄÖÜäöüß€" * 12,
    "Report =?utf-8?b?SGFja2Vk?= now",  # looks like an encoded-word: must not be read as one
    "x" * 100 + " y",  # a word too long to fold
    "Zeile\x01mit Steuerzeichen",
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_subject_reads_back_as_written_in_lines_a_mail_server_accepts(subject):
    mail = OutgoingMail(sender="Erfolgsfaktor Interkulturelle Öffnung <berichte@example.org>",
                        to=["a@example.org"], cc=[], subject=subject, text="Text\n",
                        html="<p>Text</p>", message_id="<1@example.org>", language="de",
                        rung="invitation")
    raw = mime_bytes(mail)
    header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    subject_lines = header_lines[:next(n for n, line in enumerate(header_lines[1:], 1)
                                       if not line.startswith(b" "))]
    assert all(len(line) <= 78 for line in subject_lines)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "Erfolgsfaktor Interkulturelle Öffnung"


def test_a_character_is_never_split_between_two_encoded_words():
    encoded = encoded_words("€" * 40)  # three bytes each: 42 bytes hold exactly 14
    words = encoded.split("\r\n ")
    assert len(words) == 3 and all(len(word) <= 75 for word in words)
