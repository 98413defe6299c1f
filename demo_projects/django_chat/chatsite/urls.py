"""URLs: the chat page, and django_modelriver mounted at /modelriver/."""

from chat import views
from django.urls import include, path

urlpatterns = [
    path("", views.index, name="index"),
    path("modelriver/", include("django_modelriver.urls")),
]
