"""The chat page: the widget does the rest (POST /modelriver/start, the socket, resume)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/index.html")
