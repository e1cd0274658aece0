print("crest")
