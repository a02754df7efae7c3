class Cpp:
    def __init__(self, path):
        pass
    def page_names(self):
        return []
    def pages(self):
        return []
