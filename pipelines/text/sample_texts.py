"""Short sample corpora for the n-gram model, written for this project (free to reuse with the code).

Each is a few paragraphs: enough for a bigram model to babble, and small enough that a 4-gram model
mostly recites, which is the lesson about sparsity.
"""

from __future__ import annotations

THE_SEA = """\
The sea is never still. Even on the calmest morning the water breathes in and out along the shore, \
and the small stones roll back and forth with a sound like someone whispering. The fishermen say \
that the sea remembers every storm, and that you can read those storms in the shape of the beach.

In the harbour the boats wait for the tide. When the tide comes in, the boats lift and turn their \
noses toward the open sea, as if they were listening. When the tide goes out, they lean on the mud \
and sleep. The gulls walk between them and look for anything the fishermen forgot.

Far from the land the sea is a different animal. The waves are long and slow, and the water is so \
deep that it looks black at noon. Whales cross it without hurry. Ships cross it in a hurry. The wind \
pushes the waves, the waves push the ships, and the ships push back with their engines and their \
sails.

At night the sea is dark and loud. A lighthouse turns its light across the water, once, twice, and \
again, and every sailor who sees it knows where the rocks are. In the morning the light goes out, \
the fishermen come down to the harbour, and the sea begins its work again.
"""

THE_KITCHEN = """\
A good soup starts with an onion. Cut the onion into small pieces and cook it slowly in a little \
butter until it is soft and sweet. Do not let it burn: a burnt onion makes a bitter soup, and no \
amount of salt will hide it.

Next come the vegetables. Carrots, potatoes and a stick of celery are enough for a simple soup. \
Cut them into pieces of the same size, so that they cook in the same time. Add them to the pot, \
stir them with the onion, and pour in enough water to cover them.

Now the soup needs time. Let it simmer with the lid half on for twenty minutes, until a knife goes \
into the potatoes without effort. Taste it. Add salt, a little pepper, and perhaps a bay leaf. A \
soup that tastes of nothing needs salt; a soup that tastes only of salt needs more water.

Bread is the soup's best friend. While the soup simmers, cut thick slices of bread and toast them \
in a hot pan with a little oil. Serve the soup in warm bowls, put the bread on the side, and call \
everyone to the table before the soup gets cold.
"""

THE_FAIRY_TALE = """\
Once upon a time, at the edge of a great forest, there lived a miller's daughter who could talk to \
the wind. Every morning she climbed the hill behind the mill and asked the wind where it had been, \
and every morning the wind told her a story.

One day the wind came back quiet and cold. It told her that the king of the forest had lost his \
voice, and that without his voice the trees could not sing, and without their song the spring would \
never come. The miller's daughter put bread in her bag and walked into the forest.

She walked for three days. On the first day she met a fox who asked for bread, and she gave him \
half of hers. On the second day she met an old woman who asked for the way, and she showed her the \
way. On the third day she met the king of the forest, sitting on a stone, silent and sad.

The miller's daughter did not know any magic. So she did what she knew: she asked the wind to tell \
the king a story. The wind told the story of the fox and the old woman and the girl who walked for \
three days. The king laughed, and with his laugh his voice came back. The trees began to sing, the \
spring came to the forest, and the miller's daughter walked home with the wind at her back.
"""

SAMPLE_TEXTS: dict[str, str] = {
    "The sea": THE_SEA,
    "Making soup": THE_KITCHEN,
    "A fairy tale": THE_FAIRY_TALE,
}
