from django.http import HttpResponse


def search(request):
    return HttpResponse("")


def order_list(request):
    return HttpResponse("")


def order_detail(request, pk):
    return HttpResponse("")
