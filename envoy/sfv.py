"""A small strict parser for RFC 8941 structured-field Lists (what x-switchyard-exposure is).

parse_list(text) -> [(bare_item, {param: value})]; inner lists are returned as
(list_of_items, params). Raises ValueError on anything RFC 8941 does not allow.
"""
import base64
import re

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*")
_NUMBER = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,3})?")


class Token(str):
    """An RFC 8941 token (as opposed to a string)."""


class _P:
    def __init__(self, s):
        self.s, self.i = s, 0

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def eat(self, ch):
        if self.peek() != ch:
            raise ValueError("expected %r at %d in %r" % (ch, self.i, self.s))
        self.i += 1

    def sp(self):
        while self.peek() == " ":
            self.i += 1

    def ows(self):
        while self.peek() in (" ", "\t") and self.peek():
            self.i += 1

    def bare(self):
        c = self.peek()
        if c == '"':
            self.i += 1
            out = []
            while True:
                c = self.peek()
                if c == "":
                    raise ValueError("unterminated string")
                self.i += 1
                if c == "\\":
                    n = self.peek()
                    if n not in ('"', "\\"):
                        raise ValueError("bad escape")
                    out.append(n)
                    self.i += 1
                elif c == '"':
                    return "".join(out)
                elif not (0x20 <= ord(c) <= 0x7E):
                    raise ValueError("non-printable in string")
                else:
                    out.append(c)
        if c == ":":
            j = self.s.index(":", self.i + 1)
            data = self.s[self.i + 1:j]
            self.i = j + 1
            return base64.b64decode(data, validate=True)
        if c == "?":
            self.i += 1
            v = self.peek()
            if v not in ("0", "1"):
                raise ValueError("bad boolean")
            self.i += 1
            return v == "1"
        if c == "-" or c.isdigit():
            m = _NUMBER.match(self.s, self.i)
            if not m:
                raise ValueError("bad number at %d" % self.i)
            self.i = m.end()
            return float(m.group()) if m.group(1) else int(m.group())
        m = _TOKEN.match(self.s, self.i)
        if not m:
            raise ValueError("bad item at %d in %r" % (self.i, self.s))
        self.i = m.end()
        return Token(m.group())

    def params(self):
        out = {}
        while self.peek() == ";":
            self.i += 1
            self.sp()
            m = _KEY.match(self.s, self.i)
            if not m:
                raise ValueError("bad parameter key at %d in %r" % (self.i, self.s))
            self.i = m.end()
            if self.peek() == "=":
                self.i += 1
                out[m.group()] = self.bare()
            else:
                out[m.group()] = True
        return out

    def item_or_inner(self):
        if self.peek() == "(":
            self.i += 1
            items = []
            while True:
                self.sp()
                if self.peek() == ")":
                    self.i += 1
                    return (items, self.params())
                items.append((self.bare(), self.params()))
                if self.peek() not in (" ", ")"):
                    raise ValueError("bad inner list")
        return (self.bare(), self.params())


def parse_list(text):
    p = _P(text.strip(" "))
    out = []
    if p.s == "":
        return out
    while True:
        out.append(p.item_or_inner())
        p.ows()
        if p.peek() == "":
            return out
        p.eat(",")
        p.ows()
        if p.peek() == "":
            raise ValueError("trailing comma")
