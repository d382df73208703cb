"""WTForms for the browser pages (every form carries `csrf_token`)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, EqualTo, Length


class RegisterForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(3, 64)])
    email = EmailField("E-mail", validators=[DataRequired(), Length(3, 255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8)])
    password_confirm = PasswordField(
        "Repeat password", validators=[DataRequired(), EqualTo("password", "Passwords differ.")]
    )


class LoginForm(FlaskForm):
    username = StringField("Username or e-mail", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired(), Length(min=8)])
    new_password_confirm = PasswordField("Repeat new password", validators=[DataRequired()])


class ImageEditForm(FlaskForm):
    title = StringField("Title", validators=[Length(max=255)])
    description = TextAreaField("Description", validators=[Length(max=5000)])
    visibility = SelectField(
        "Visibility (unlisted: anyone with the link; private: only you)",
        choices=["unlisted", "public", "private"],
    )


class EmptyForm(FlaskForm):
    """Buttons that only need the CSRF token (delete, logout, key rotation)."""
