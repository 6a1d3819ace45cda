"""Passwords and logins: bcrypt hashes as streamlit-authenticator checks them."""

from __future__ import annotations

import bcrypt


def hash_password(plain: str) -> str:
    """A bcrypt hash of `plain`, in the form streamlit-authenticator verifies."""
    return bcrypt.hashpw(plain.encode(), bcrypt.gensalt()).decode()


def password_matches(plain: str, hashed: str) -> bool:
    """True when `plain` is the password behind `hashed`."""
    return bcrypt.checkpw(plain.encode(), hashed.encode())
