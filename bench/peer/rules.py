"""The cleaning constants both Python peers use (SPEC §2): the placeholder values that mean
"no value", and each table's fields in order. A module of its own, without dependencies, so the
pandas peer does not import polars through handler.py.
"""

NULLS = {
    "title": ["No Title Data Available"],
    "description": ["No description available Story format", "No description available", "Untitled"],
    "poster_name": ["User Info Error"],
    "follower_count": ["User Info Error"],
    "tag_list": ["N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"],
    "image_src": ["Image src error."],
}
FIELDS = {
    "pin": ["index", "ind", "unique_id", "title", "description", "follower_count", "poster_name", "tag_list",
            "is_image_or_video", "image_src", "save_location", "category", "downloaded"],
    "geo": ["ind", "index", "country", "latitude", "longitude", "timestamp"],
    "user": ["ind", "index", "first_name", "last_name", "age", "date_joined"],
}
